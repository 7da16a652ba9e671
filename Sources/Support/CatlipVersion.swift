/// The version of catlip, in one place: `catlip --version` prints it. Kept in the bottom module
/// so that any module that records what produced a file can name the same version.
public enum CatlipVersion {
    /// The release this source tree is (issue 19's; the repository has no tags for
    /// `git describe` to read at build time, so it is a constant raised with each release).
    public static let string = "0.19.0"
}
