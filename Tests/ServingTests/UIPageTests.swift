import XCTest

@testable import Serving

/// The page `catlip serve --ui` serves: its routes, and what its Content-Security-Policy needs of
/// it (no inline script or style, nothing from another origin). The page's behaviour in a real
/// browser is Tests/browser/check_ui.py's.
final class UIPageTests: XCTestCase {
    func testRoutes() throws {
        let page = try XCTUnwrap(UIPage.asset(path: "/"))
        XCTAssertEqual(page.contentType, "text/html; charset=utf-8")
        XCTAssertEqual(UIPage.asset(path: "/ui/app.js")?.contentType, "text/javascript; charset=utf-8")
        XCTAssertEqual(UIPage.asset(path: "/ui/app.css")?.contentType, "text/css; charset=utf-8")
        XCTAssertEqual(UIPage.asset(path: "/?q=car")?.body, page.body)
        for path in ["", "/index.html", "/ui/", "/ui/app.js/", "/ui/../ui/app.js", "/UI/app.js", "/ui/app.map"] {
            XCTAssertNil(UIPage.asset(path: path), path)
        }
    }

    func testPageLoadsOnlyItsOwnAssets() throws {
        let html = try XCTUnwrap(UIPage.asset(path: "/")?.body)
        XCTAssertTrue(html.contains(#"<script src="/ui/app.js" defer></script>"#))
        XCTAssertTrue(html.contains(#"<link rel="stylesheet" href="/ui/app.css">"#))
        // every script has a src (nothing inline), and no element carries a style attribute or an
        // on* handler, which the policy would block
        XCTAssertEqual(html.components(separatedBy: "<script").count, html.components(separatedBy: "<script src=").count)
        XCTAssertNil(html.range(of: #"\sstyle\s*="#, options: .regularExpression))
        XCTAssertNil(html.range(of: #"\son[a-z]+\s*="#, options: .regularExpression))
        for asset in ["/", "/ui/app.js", "/ui/app.css"] {
            let body = try XCTUnwrap(UIPage.asset(path: asset)?.body)
            XCTAssertNil(body.range(of: #"(https?:)?//[A-Za-z0-9.-]+\.[a-z]{2,}"#, options: .regularExpression), asset)
            XCTAssertFalse(body.contains("@import"), asset)
        }
    }

    func testScriptPutsServerStringsInAsText() throws {
        let script = try XCTUnwrap(UIPage.asset(path: "/ui/app.js")?.body)
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
            XCTAssertFalse(script.contains(sink), sink)
        }
    }

    func testElementsTheBrowserTestUses() throws {
        let html = try XCTUnwrap(UIPage.asset(path: "/")?.body)
        for id in ["query", "search-button", "file-input", "drop-zone", "results", "synsets", "labels", "model", "metrics", "error"] {
            XCTAssertEqual(html.components(separatedBy: #"id="\#(id)""#).count, 2, id)
        }
        XCTAssertTrue(html.contains(#"<label for="query">"#))
        XCTAssertTrue(html.contains(#"<label for="file-input""#))
    }

    func testContentSecurityPolicy() {
        let csp = UIPage.contentSecurityPolicy
        for directive in [
            "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob: data:",
            "connect-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
        ] {
            XCTAssertTrue(csp.contains(directive), directive)
        }
        XCTAssertFalse(csp.contains("unsafe"))
        XCTAssertFalse(csp.contains("\n"))
    }
}
