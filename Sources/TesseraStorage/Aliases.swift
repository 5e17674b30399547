import TesseraCore
import TesseraProtocol

// Foundation has an `Operation` (NSOperation) too; in this module the name means ours.
public typealias Operation = TesseraCore.Operation
public typealias Snapshot = TesseraProtocol.Snapshot
