import Foundation
import XCTest

/// A test case with a fresh folder of its own under the system's temporary directory for each
/// test (`directory`), removed afterwards: for tests that plant files (FIFOs, symlinks, sparse
/// files, mutated inputs) next to the code under test.
open class ScratchDirectoryTestCase: XCTestCase {
    /// The test's folder (no trailing slash).
    public private(set) var directory = ""

    open override func setUpWithError() throws {
        try super.setUpWithError()
        let name = String(describing: type(of: self)) + "-" + UUID().uuidString
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(name).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    open override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
        try super.tearDownWithError()
    }
}
