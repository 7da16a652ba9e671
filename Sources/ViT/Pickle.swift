// A pickle reader that executes nothing (issue 22): a stack machine for the plain-data opcodes
// of pickle protocols 2 to 5, written from the opcode descriptions in CPython's
// Lib/pickletools.py. Python's own unpickler imports and calls whatever a pickle names, which
// is why a downloaded checkpoint must never go through it; here a global is only a name, and
// only the names the caller allows are accepted. What calling one of them (REDUCE, NEWOBJ) or
// setting its state (BUILD) means is decided by the caller's rules, which return plain values
// or references into the caller's own tables. Malformed or hostile input is a thrown
// `PickleError` naming the byte offset and the opcode; lengths are checked against the bytes
// that remain before anything is allocated, and the stack, memo and nesting depth are bounded.

/// A value read from a pickle: plain data, the names of globals, and references to objects the
/// caller's rules made (tensors, storages, ...).
public indirect enum PickleValue: Sendable, Equatable {
    /// Python's None.
    case none
    /// True or False.
    case bool(Bool)
    /// An integer (pickles with integers outside Int64 are refused).
    case int(Int64)
    /// A float.
    case float(Double)
    /// A str.
    case string(String)
    /// A bytes object.
    case bytes([UInt8])
    /// A tuple.
    case tuple([PickleValue])
    /// A list.
    case list([PickleValue])
    /// A dict (or OrderedDict, when the rules make one): its pairs in insertion order. A key
    /// set twice appears twice; callers that need unique keys check.
    case dict([(key: PickleValue, value: PickleValue)])
    /// A module-level name pushed by GLOBAL or STACK_GLOBAL (only allowed names get here).
    case global(module: String, name: String)
    /// An object made by the caller's rules: its kind and its index in the caller's table.
    case reference(kind: String, index: Int)

    /// Tuples compare element by element; dict pairs in order.
    public static func == (a: PickleValue, b: PickleValue) -> Bool {
        switch (a, b) {
        case (.none, .none): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.float(let x), .float(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.bytes(let x), .bytes(let y)): return x == y
        case (.tuple(let x), .tuple(let y)), (.list(let x), .list(let y)): return x == y
        case (.dict(let x), .dict(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.global(let m, let n), .global(let m2, let n2)): return m == m2 && n == n2
        case (.reference(let k, let i), .reference(let k2, let i2)): return k == k2 && i == i2
        default: return false
        }
    }

    /// What kind of value this is, in Python's words, for error messages (never the contents,
    /// which may be huge or hostile).
    public var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "a bool"
        case .int: return "an int"
        case .float: return "a float"
        case .string: return "a str"
        case .bytes: return "bytes"
        case .tuple(let t): return "a tuple of \(t.count)"
        case .list(let l): return "a list of \(l.count)"
        case .dict(let d): return "a dict of \(d.count)"
        case .global(let m, let n): return "the global '\(m).\(n)'"
        case .reference(let kind, _): return "a \(kind)"
        }
    }
}

/// A pickle that cannot be read: where (byte offset of the opcode), which opcode, and why.
public struct PickleError: Error, CustomStringConvertible, Equatable {
    /// Byte offset of the opcode being executed (-1 when not known yet).
    public var offset: Int
    /// The opcode's name (pickletools' names), or a hex byte for unknown ones.
    public var opcode: String
    /// What is wrong, in words.
    public var problem: String

    /// A refusal thrown by a rule; the reader fills in the offset and opcode.
    public init(_ problem: String) {
        self.offset = -1
        self.opcode = ""
        self.problem = problem
    }

    /// An error at a known place.
    public init(offset: Int, opcode: String, problem: String) {
        self.offset = offset
        self.opcode = opcode
        self.problem = problem
    }

    /// "byte N (OPCODE): problem", one line.
    public var description: String {
        offset < 0 ? problem : "byte \(offset) (\(opcode)): \(problem)"
    }
}

/// What a pickle may do beyond plain data, decided by the caller. Every closure receives
/// already-read values and returns the value to push; throwing `PickleError("...")` refuses.
public struct PickleRules {
    /// Globals that GLOBAL and STACK_GLOBAL may name, spelled "module.name"; any other is
    /// refused by name.
    public var allowedGlobals: Set<String>
    /// What REDUCE of the allowed global `module.name` with the argument tuple means; nil refuses
    /// every REDUCE. The result must be no more deeply nested than the arguments plus one.
    public var reduce: ((_ module: String, _ name: String, _ args: [PickleValue]) throws -> PickleValue)?
    /// What BUILD (set `state` on `object`) means; nil refuses every BUILD.
    public var build: ((_ object: PickleValue, _ state: PickleValue) throws -> PickleValue)?
    /// What a persistent id (BINPERSID) refers to; nil refuses them.
    public var persistentLoad: ((_ id: PickleValue) throws -> PickleValue)?
    /// What NEWOBJ (cls.__new__(cls, *args)) of an allowed class means; nil refuses NEWOBJ.
    public var newObject: ((_ module: String, _ name: String, _ args: [PickleValue]) throws -> PickleValue)?

    /// Rules allowing `allowedGlobals` and nothing else until closures are set.
    public init(allowedGlobals: Set<String> = []) {
        self.allowedGlobals = allowedGlobals
    }
}

/// The reader (see the file comment). `read` runs a whole pickle and returns the value STOP
/// leaves on the stack.
///
/// Containers are values: a container stored in the memo and changed afterwards is updated in
/// the memo too, so later BINGETs see it as Python would; a container that refers to itself
/// sees the contents it had when it was fetched (cycles are cut rather than followed).
public struct PickleReader {
    /// Deepest nesting of containers accepted (deeper values would make recursive code,
    /// including their release, run out of stack).
    public var maxDepth = 100
    /// Most values on the stack at once.
    public var maxStack = 1 << 20
    /// Most memo entries.
    public var maxMemo = 1 << 22
    /// The rules for globals, REDUCE, BUILD, persistent ids and NEWOBJ.
    public var rules: PickleRules

    /// A reader with `rules`.
    public init(rules: PickleRules) {
        self.rules = rules
    }

    /// One stack or memo slot: the value, its nesting depth, and the memo key it was stored
    /// under or fetched from (so that changes to a container reach the memo).
    struct Slot {
        var value: PickleValue
        var depth: Int
        var memoKey: Int?
        /// Which object this is: copies (DUP, BINGET) share it, new values get a fresh one.
        var identity: Int
    }

    /// Runs the pickle in `bytes` to its STOP and returns the result. Throws `PickleError`.
    public func read(_ bytes: UnsafeRawBufferPointer) throws -> PickleValue {
        var machine = Machine(reader: self, bytes: bytes)
        return try machine.run()
    }

    /// Runs the pickle in `bytes` (see `read(_: UnsafeRawBufferPointer)`).
    public func read(_ bytes: [UInt8]) throws -> PickleValue {
        try bytes.withUnsafeBytes { try read($0) }
    }

    /// The state of one run.
    struct Machine {
        let reader: PickleReader
        let bytes: UnsafeRawBufferPointer
        var position = 0
        var opcodeStart = 0
        var opcodeName = ""
        var stack: [Slot] = []
        var marks: [Int] = []
        var memo: [Int: Slot] = [:]
        var identities = 0

        init(reader: PickleReader, bytes: UnsafeRawBufferPointer) {
            self.reader = reader
            self.bytes = bytes
        }

        func fail(_ problem: String) -> PickleError {
            PickleError(offset: opcodeStart, opcode: opcodeName, problem: problem)
        }

        // MARK: reading arguments

        mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
            guard n >= 0, n <= bytes.count - position else {
                throw fail(
                    "needs \(n) bytes but only \(bytes.count - position) remain (truncated?)")
            }
            defer { position += n }
            return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
        }

        mutating func uint(_ width: Int) throws -> UInt64 {
            let b = try take(width)
            var v: UInt64 = 0
            for i in 0..<width { v |= UInt64(b[i]) << (8 * UInt64(i)) }
            return v
        }

        /// A length field of `width` bytes, checked against the bytes that remain.
        mutating func length(_ width: Int) throws -> Int {
            let n = try uint(width)
            guard n <= UInt64(bytes.count - position) else {
                throw fail("length \(n) exceeds the \(bytes.count - position) bytes that remain")
            }
            return Int(n)
        }

        /// A newline-terminated ASCII line (GLOBAL, INT), at most 1000 bytes.
        mutating func line() throws -> String {
            var end = position
            while end < bytes.count, bytes[end] != 0x0A {
                end += 1
                if end - position > 1000 { throw fail("line longer than 1000 bytes") }
            }
            guard end < bytes.count else { throw fail("unterminated line (truncated?)") }
            let text = UnsafeRawBufferPointer(rebasing: bytes[position..<end])
            guard text.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                throw fail("line holds bytes that are not printable ASCII")
            }
            position = end + 1
            return String(decoding: text, as: UTF8.self)
        }

        mutating func utf8(_ n: Int) throws -> String {
            let raw = try take(n)
            guard let s = String(validating: raw, as: UTF8.self) else {
                throw fail("string of \(n) bytes is not valid UTF-8")
            }
            return s
        }

        // MARK: the stack

        mutating func push(
            _ value: PickleValue, depth: Int = 0, memoKey: Int? = nil, identity: Int? = nil
        ) throws {
            guard depth <= reader.maxDepth else {
                throw fail("values nested deeper than \(reader.maxDepth) levels")
            }
            guard stack.count < reader.maxStack else {
                throw fail("more than \(reader.maxStack) values on the stack")
            }
            identities += 1
            stack.append(
                Slot(value: value, depth: depth, memoKey: memoKey, identity: identity ?? identities))
        }

        mutating func pop() throws -> Slot {
            guard let top = stack.popLast(), stack.count >= (marks.last ?? 0) else {
                throw fail("stack underflow")
            }
            return top
        }

        /// The slots above the topmost mark, which is removed.
        mutating func popMark() throws -> [Slot] {
            guard let mark = marks.popLast() else { throw fail("no MARK on the stack") }
            let items = Array(stack[mark...])
            stack.removeSubrange(mark...)
            return items
        }

        /// Index of the top slot, which must exist above the topmost mark.
        func topIndex() throws -> Int {
            guard stack.count > (marks.last ?? 0) else { throw fail("stack underflow") }
            return stack.count - 1
        }

        /// Changes the container in slot `i` by putting `children` into it through `change`; the
        /// slot and the memo entry it came from are emptied first so the container is uniquely
        /// referenced (no copy).
        mutating func modify(
            _ i: Int, adding children: [Slot], _ change: (inout PickleValue) throws -> Void
        ) throws {
            let depth = max(stack[i].depth, 1 + (children.map(\.depth).max() ?? 0))
            guard depth <= reader.maxDepth else {
                throw fail("values nested deeper than \(reader.maxDepth) levels")
            }
            var value = stack[i].value
            let identity = stack[i].identity
            // The memo entry still holds this object unless its key was reused since.
            let key = stack[i].memoKey.flatMap { memo[$0]?.identity == identity ? $0 : nil }
            stack[i].value = .none
            if let key { memo[key]?.value = .none }
            defer {
                stack[i].value = value
                stack[i].depth = depth
                if let key { memo[key] = Slot(value: value, depth: depth, memoKey: key, identity: identity) }
            }
            do {
                try change(&value)
            } catch let e as PickleError where e.offset < 0 {
                throw fail(e.problem)
            }
        }

        mutating func appendItems(_ items: [Slot]) throws {
            try modify(try topIndex(), adding: items) { value in
                guard case .list(var list) = value else {
                    throw PickleError("APPEND to \(value.typeName), not a list")
                }
                value = .none
                list.append(contentsOf: items.map(\.value))
                value = .list(list)
            }
        }

        mutating func setItems(_ items: [Slot]) throws {
            guard items.count % 2 == 0 else { throw fail("odd number of keys and values") }
            try modify(try topIndex(), adding: items) { value in
                guard case .dict(var pairs) = value else {
                    throw PickleError("SETITEM on \(value.typeName), not a dict")
                }
                value = .none
                for k in stride(from: 0, to: items.count, by: 2) {
                    pairs.append((items[k].value, items[k + 1].value))
                }
                value = .dict(pairs)
            }
        }

        mutating func store(_ key: Int) throws {
            let i = try topIndex()
            guard memo.count < reader.maxMemo || memo[key] != nil else {
                throw fail("more than \(reader.maxMemo) memo entries")
            }
            memo[key] = Slot(
                value: stack[i].value, depth: stack[i].depth, memoKey: key,
                identity: stack[i].identity)
            stack[i].memoKey = key
        }

        mutating func fetch(_ key: Int) throws {
            guard let slot = memo[key] else { throw fail("memo key \(key) was never stored") }
            try push(slot.value, depth: slot.depth, memoKey: key, identity: slot.identity)
        }

        /// `module.name`, refused unless allowed.
        func global(_ module: String, _ name: String) throws -> PickleValue {
            guard reader.rules.allowedGlobals.contains(module + "." + name) else {
                throw fail("global '\(module).\(name)' is not allowed")
            }
            return .global(module: module, name: name)
        }

        /// Calls a rule, turning its refusals into errors at the current opcode.
        func apply<T>(_ body: () throws -> T) throws -> T {
            do {
                return try body()
            } catch let e as PickleError where e.offset < 0 {
                throw fail(e.problem)
            }
        }

        // MARK: running

        mutating func run() throws -> PickleValue {
            while true {
                opcodeStart = position
                opcodeName = "end of data"
                guard position < bytes.count else {
                    throw fail("the pickle ends without STOP (truncated?)")
                }
                let op = bytes[position]
                position += 1
                opcodeName = PickleReader.opcodeNames[op] ?? "opcode 0x" + String(op, radix: 16)
                switch op {
                case 0x80:  // PROTO
                    let version = try uint(1)
                    guard (2...5).contains(version) else {
                        throw fail("pickle protocol \(version) is not supported (2 to 5 are)")
                    }
                case 0x95:  // FRAME: framing only groups opcodes; its length must fit.
                    _ = try length(8)
                case 0x2E:  // STOP
                    let result = try pop()
                    return result.value
                case 0x28:  // MARK
                    guard marks.count < reader.maxStack else { throw fail("too many MARKs") }
                    marks.append(stack.count)
                case 0x30:  // POP: the top value, or the topmost mark when nothing is above it
                    if let mark = marks.last, mark == stack.count {
                        marks.removeLast()
                    } else {
                        _ = try pop()
                    }
                case 0x31:  // POP_MARK
                    _ = try popMark()
                case 0x32:  // DUP
                    let top = stack[try topIndex()]
                    try push(top.value, depth: top.depth, memoKey: top.memoKey, identity: top.identity)
                case 0x4E: try push(.none)
                case 0x88: try push(.bool(true))
                case 0x89: try push(.bool(false))
                case 0x49:  // INT: decimal text; "01" and "00" are True and False
                    let text = try line()
                    if text == "01" {
                        try push(.bool(true))
                    } else if text == "00" {
                        try push(.bool(false))
                    } else {
                        guard let v = Int64(text) else { throw fail("'\(text)' is not an integer") }
                        try push(.int(v))
                    }
                case 0x4A: try push(.int(Int64(Int32(truncatingIfNeeded: try uint(4)))))
                case 0x4B: try push(.int(Int64(try uint(1))))
                case 0x4D: try push(.int(Int64(try uint(2))))
                case 0x8A:  // LONG1: little-endian two's complement of n bytes
                    let n = Int(try uint(1))
                    guard n <= 8 else { throw fail("integer of \(n) bytes is too large") }
                    var v = try uint(n)
                    if n > 0, n < 8, v >> (8 * UInt64(n) - 1) & 1 == 1 {
                        v |= ~0 << (8 * UInt64(n))  // sign-extend
                    }
                    try push(.int(Int64(bitPattern: v)))
                case 0x47:  // BINFLOAT: big-endian
                    let b = try take(8)
                    var bits: UInt64 = 0
                    for i in 0..<8 { bits = bits << 8 | UInt64(b[i]) }
                    try push(.float(Double(bitPattern: bits)))
                case 0x8C: try push(.string(try utf8(try length(1))))
                case 0x58: try push(.string(try utf8(try length(4))))
                case 0x8D: try push(.string(try utf8(try length(8))))
                case 0x43: try push(.bytes(Array(try take(try length(1)))))
                case 0x42: try push(.bytes(Array(try take(try length(4)))))
                case 0x8E: try push(.bytes(Array(try take(try length(8)))))
                case 0x29: try push(.tuple([]), depth: 1)
                case 0x74:  // TUPLE
                    let items = try popMark()
                    try push(.tuple(items.map(\.value)), depth: 1 + (items.map(\.depth).max() ?? 0))
                case 0x85, 0x86, 0x87:  // TUPLE1, TUPLE2, TUPLE3
                    let n = Int(op - 0x84)
                    var items: [Slot] = []
                    for _ in 0..<n { items.insert(try pop(), at: 0) }
                    try push(.tuple(items.map(\.value)), depth: 1 + (items.map(\.depth).max() ?? 0))
                case 0x5D: try push(.list([]), depth: 1)
                case 0x6C:  // LIST
                    let items = try popMark()
                    try push(.list(items.map(\.value)), depth: 1 + (items.map(\.depth).max() ?? 0))
                case 0x61: try appendItems([try pop()])
                case 0x65: try appendItems(try popMark())
                case 0x7D: try push(.dict([]), depth: 1)
                case 0x64:  // DICT
                    let items = try popMark()
                    try push(.dict([]), depth: 1)
                    try setItems(items)
                case 0x73:  // SETITEM
                    let value = try pop()
                    let key = try pop()
                    try setItems([key, value])
                case 0x75: try setItems(try popMark())
                case 0x71: try store(Int(try uint(1)))
                case 0x72: try store(Int(try uint(4)))
                case 0x94: try store(memo.count)
                case 0x68: try fetch(Int(try uint(1)))
                case 0x6A: try fetch(Int(try uint(4)))
                case 0x63:  // GLOBAL
                    let module = try line()
                    let name = try line()
                    try push(try global(module, name))
                case 0x93:  // STACK_GLOBAL
                    let name = try pop()
                    let module = try pop()
                    guard case .string(let m) = module.value, case .string(let n) = name.value
                    else {
                        throw fail("module and name are not both strings")
                    }
                    try push(try global(m, n))
                case 0x52, 0x81:  // REDUCE, NEWOBJ
                    let args = try pop()
                    let callable = try pop()
                    guard case .global(let module, let name) = callable.value else {
                        throw fail("calling \(callable.value.typeName) is not allowed")
                    }
                    guard case .tuple(let arguments) = args.value else {
                        throw fail("arguments are \(args.value.typeName), not a tuple")
                    }
                    let rule = op == 0x52 ? reader.rules.reduce : reader.rules.newObject
                    guard let rule else {
                        throw fail("calling '\(module).\(name)' is not allowed")
                    }
                    let result = try apply { try rule(module, name, arguments) }
                    try push(result, depth: args.depth + 1)
                case 0x62:  // BUILD
                    let state = try pop()
                    let i = try topIndex()
                    guard let rule = reader.rules.build else {
                        throw fail("setting the state of \(stack[i].value.typeName) is not allowed")
                    }
                    let object = stack[i].value
                    let result = try apply { try rule(object, state.value) }
                    try modify(i, adding: [state]) { $0 = result }
                case 0x51:  // BINPERSID
                    let id = try pop()
                    guard let rule = reader.rules.persistentLoad else {
                        throw fail("persistent ids are not allowed")
                    }
                    let result = try apply { try rule(id.value) }
                    try push(result, depth: id.depth)
                default:
                    throw fail("opcode is not supported (only plain data is read)")
                }
            }
        }
    }

    /// pickletools' names of the opcodes, for error messages.
    static let opcodeNames: [UInt8: String] = [
        0x80: "PROTO", 0x95: "FRAME", 0x2E: "STOP", 0x28: "MARK", 0x30: "POP", 0x31: "POP_MARK",
        0x32: "DUP", 0x4E: "NONE", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x49: "INT", 0x4A: "BININT",
        0x4B: "BININT1", 0x4D: "BININT2", 0x8A: "LONG1", 0x8B: "LONG4", 0x47: "BINFLOAT",
        0x46: "FLOAT", 0x4C: "LONG", 0x8C: "SHORT_BINUNICODE", 0x58: "BINUNICODE",
        0x8D: "BINUNICODE8", 0x56: "UNICODE", 0x43: "SHORT_BINBYTES", 0x42: "BINBYTES",
        0x8E: "BINBYTES8", 0x96: "BYTEARRAY8", 0x53: "STRING", 0x54: "BINSTRING",
        0x55: "SHORT_BINSTRING", 0x29: "EMPTY_TUPLE", 0x74: "TUPLE", 0x85: "TUPLE1",
        0x86: "TUPLE2", 0x87: "TUPLE3", 0x5D: "EMPTY_LIST", 0x61: "APPEND", 0x65: "APPENDS",
        0x6C: "LIST", 0x7D: "EMPTY_DICT", 0x64: "DICT", 0x73: "SETITEM", 0x75: "SETITEMS",
        0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x70: "PUT", 0x71: "BINPUT",
        0x72: "LONG_BINPUT", 0x94: "MEMOIZE", 0x67: "GET", 0x68: "BINGET", 0x6A: "LONG_BINGET",
        0x63: "GLOBAL", 0x93: "STACK_GLOBAL", 0x52: "REDUCE", 0x62: "BUILD", 0x69: "INST",
        0x6F: "OBJ", 0x81: "NEWOBJ", 0x92: "NEWOBJ_EX", 0x50: "PERSID", 0x51: "BINPERSID",
        0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
    ]
}
