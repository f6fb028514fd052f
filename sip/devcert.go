package sip

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Files of the development certificate inside its directory.
const (
	devCertFile = "dev-cert.pem"
	devKeyFile  = "dev-key.pem"
)

// devCertLifetime is how long a development certificate is valid: the
// longest lifetime clients that cap server certificates (825 days) accept.
// One that expires within devCertRenew is reissued with the same key.
const (
	devCertLifetime = 825 * 24 * time.Hour
	devCertRenew    = 30 * 24 * time.Hour
)

// DevCertificate returns the self-signed development certificate for the
// TLS listener, valid for names and ips. With dir empty it is made afresh
// (a new key each time). Otherwise it is kept in dir (dev-cert.pem,
// dev-key.pem, created with mode 0600 for the key): the stored one is
// returned as long as it covers names and ips and is not about to expire,
// so a phone that trusts it keeps trusting it across restarts (if it
// cannot be written, the new certificate comes with an error wrapping
// errDevCertNotStored). When it
// falls short it is reissued with the same key and the union of the old
// and new names; created reports that something new was written. The
// certificate is its own CA (a phone trusts it as a root) and names
// everything in its subject alternative names, which strict clients
// check instead of the common name.
func DevCertificate(dir string, names []string, ips []netip.Addr) (cert tls.Certificate, created bool, err error) {
	names, ips = normaliseNames(names, ips)
	var key *ecdsa.PrivateKey
	if dir != "" {
		stored, err := readDevCertificate(dir)
		switch {
		case err == nil:
			leaf := stored.Leaf
			if covers(leaf, names, ips) && time.Until(leaf.NotAfter) > devCertRenew {
				return stored, false, nil
			}
			if k, ok := stored.PrivateKey.(*ecdsa.PrivateKey); ok {
				key = k
			}
			names, ips = normaliseNames(append(names, leaf.DNSNames...), append(ips, addrsOf(leaf.IPAddresses)...))
		case errors.Is(err, errDevCertCorrupt):
			return tls.Certificate{}, false, fmt.Errorf("sip: development certificate in %s (delete both files to make a new one): %w", dir, err)
		default:
			// Missing or unreadable: make a new one (and say if it
			// cannot be stored either).
		}
	}
	if key == nil {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return tls.Certificate{}, false, fmt.Errorf("sip: development certificate key: %w", err)
		}
	}
	cert, err = issueDevCertificate(key, names, ips)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	if dir != "" {
		if err := writeDevCertificate(dir, cert, key); err != nil {
			return cert, true, fmt.Errorf("%w: %w", errDevCertNotStored, err)
		}
	}
	return cert, true, nil
}

// errDevCertNotStored comes with a usable certificate that could not be
// written to its directory (it will not survive a restart).
var errDevCertNotStored = errors.New("sip: development certificate not stored")

func issueDevCertificate(key *ecdsa.PrivateKey, names []string, ips []netip.Addr) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sip: development certificate serial: %w", err)
	}
	host := "switchboard"
	if h, err := os.Hostname(); err == nil && h != "" {
		host = h
	}
	tpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Switchboard development (" + host + ")", Organization: []string{"Switchboard"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(devCertLifetime),
		// Its own issuer: CertSign so that TLS stacks that check the
		// trust anchor's key usage (mbedTLS in Linphone) accept it.
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              names,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	for _, ip := range ips {
		tpl.IPAddresses = append(tpl.IPAddresses, net.IP(ip.AsSlice()))
		// Also as a DNS name: TLS stacks without iPAddress matching
		// (mbedTLS before 3.5, in Linphone) compare an address the user
		// typed with the DNS names and fail with "CN-mismatch" otherwise.
		tpl.DNSNames = append(tpl.DNSNames, ip.String())
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sip: development certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sip: development certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func readDevCertificate(dir string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, devCertFile))
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, devKeyFile))
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %w", errDevCertCorrupt, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("%w: %w", errDevCertCorrupt, err)
		}
	}
	return cert, nil
}

// errDevCertCorrupt: the stored files exist but do not hold a certificate
// and its key.
var errDevCertCorrupt = errors.New("not a PEM certificate and key")

// writeDevCertificate stores cert and key, each through a temporary file
// and a rename, so a crash never leaves half a file.
func writeDevCertificate(dir string, cert tls.Certificate, key *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sip: development certificate directory: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("sip: development certificate key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeFileAtomic(filepath.Join(dir, devKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, devCertFile), CertificatePEM(cert), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("sip: write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("sip: write %s: %w", path, err)
	}
	return nil
}

// CertificatePEM encodes cert's chain as PEM ("CERTIFICATE" blocks), the
// form phones import as a trusted root.
func CertificatePEM(cert tls.Certificate) []byte {
	var out []byte
	for _, der := range cert.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

// covers reports whether leaf names every one of names and ips (each
// address both as an address and as a DNS name).
func covers(leaf *x509.Certificate, names []string, ips []netip.Addr) bool {
	for _, n := range names {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	for _, ip := range ips {
		if leaf.VerifyHostname(ip.String()) != nil || !slices.Contains(leaf.DNSNames, ip.String()) {
			return false
		}
	}
	return true
}

// normaliseNames drops empty names, unspecified and invalid addresses and
// duplicates, and sorts both lists (a stable certificate for the same
// inputs).
func normaliseNames(names []string, ips []netip.Addr) ([]string, []netip.Addr) {
	var ns []string
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			ips = append(ips, ip) // an address given as a name
			continue
		}
		if n != "" && !slices.Contains(ns, n) {
			ns = append(ns, n)
		}
	}
	var as []netip.Addr
	for _, ip := range ips {
		ip = ip.Unmap()
		if ip.IsValid() && !ip.IsUnspecified() && !slices.Contains(as, ip) {
			as = append(as, ip)
		}
	}
	slices.Sort(ns)
	slices.SortFunc(as, func(a, b netip.Addr) int { return a.Compare(b) })
	return ns, as
}

func addrsOf(ips []net.IP) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a)
		}
	}
	return out
}
