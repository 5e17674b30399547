import Foundation
import NIOSSL

/// A TLS file that could not be used, named so an operator can fix it.
public struct TLSSetupError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// TLS settings from PEM files, for the hub's server side and for the hub's clients (nodes and
/// the `tessera` command). TLS 1.2 at least; NIOSSL's (BoringSSL's) default cipher suites.
public enum TLSFiles {
    /// The hub's HTTPS: its certificate chain (PEM, leaf first, then intermediates) and private key.
    public static func server(certificate: String, key: String) throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(certificate) } catch {
            throw TLSSetupError("cannot read a PEM certificate chain from \(certificate): \(error)")
        }
        guard !chain.isEmpty else { throw TLSSetupError("\(certificate) holds no certificate") }
        let privateKey: NIOSSLPrivateKey
        do { privateKey = try NIOSSLPrivateKey(file: key, format: .pem) } catch {
            throw TLSSetupError("cannot read a PEM private key from \(key): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                     privateKey: .privateKey(privateKey))
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    }

    /// How a client checks the hub: always full verification (chain and host name). With
    /// `trusting`, only the certificates in that PEM file are trusted, not the system's roots:
    /// a chain's private CA, or the hub's own self-signed certificate, which pins it (a
    /// certificate from any public CA is then refused, however valid).
    public static func client(trusting file: String?) throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .fullVerification
        if let file {
            let roots: [NIOSSLCertificate]
            do { roots = try NIOSSLCertificate.fromPEMFile(file) } catch {
                throw TLSSetupError("cannot read PEM certificates from \(file): \(error)")
            }
            guard !roots.isEmpty else { throw TLSSetupError("\(file) holds no certificate") }
            configuration.trustRoots = .certificates(roots)
        }
        return configuration
    }
}
