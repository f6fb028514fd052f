package sip

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func fingerprint(c tls.Certificate) [32]byte { return sha256.Sum256(c.Certificate[0]) }

func TestDevCertificateKeptOnDisk(t *testing.T) {
	loop := netip.MustParseAddr("127.0.0.1")
	lan := netip.MustParseAddr("192.0.2.7")
	type step struct {
		names       []string
		ips         []netip.Addr
		prepare     func(t *testing.T, dir string)
		wantCreated bool
		wantSame    bool // same certificate as the step before
		wantSameKey bool // same key as the step before
		wantErr     bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"restart keeps it", []step{
			{names: []string{"localhost"}, ips: []netip.Addr{loop}, wantCreated: true},
			{names: []string{"localhost"}, ips: []netip.Addr{loop}, wantSame: true, wantSameKey: true},
		}},
		{"a new address reissues with the same key and keeps the old names", []step{
			{names: []string{"localhost", "pbx.example"}, ips: []netip.Addr{loop}, wantCreated: true},
			{names: []string{"localhost"}, ips: []netip.Addr{loop, lan}, wantCreated: true, wantSameKey: true},
			{names: []string{"pbx.example"}, ips: []netip.Addr{lan}, wantSame: true, wantSameKey: true},
		}},
		{"an address given as a name is an address", []step{
			{names: []string{"192.0.2.7"}, wantCreated: true},
			{ips: []netip.Addr{lan}, wantSame: true, wantSameKey: true},
		}},
		{"about to expire reissues", []step{
			{ips: []netip.Addr{loop}, prepare: func(t *testing.T, dir string) { writeShortLivedCert(t, dir) }, wantCreated: true},
		}},
		{"a corrupt file is an error, not silently replaced", []step{
			{ips: []netip.Addr{loop}, wantCreated: true},
			{ips: []netip.Addr{loop}, prepare: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, devCertFile), []byte("not PEM"), 0o644); err != nil {
					t.Fatal(err)
				}
			}, wantErr: true},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tls")
			var prev tls.Certificate
			for i, s := range tc.steps {
				if s.prepare != nil {
					s.prepare(t, dir)
				}
				cert, created, err := DevCertificate(dir, s.names, s.ips)
				if s.wantErr {
					if err == nil {
						t.Fatalf("step %d: no error", i)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if created != s.wantCreated {
					t.Errorf("step %d: created %v, want %v", i, created, s.wantCreated)
				}
				if i > 0 {
					if same := fingerprint(cert) == fingerprint(prev); same != s.wantSame {
						t.Errorf("step %d: same certificate %v, want %v", i, same, s.wantSame)
					}
					sameKey := cert.PrivateKey.(*ecdsa.PrivateKey).Equal(prev.PrivateKey)
					if sameKey != s.wantSameKey {
						t.Errorf("step %d: same key %v, want %v", i, sameKey, s.wantSameKey)
					}
				}
				for _, n := range s.names {
					if err := cert.Leaf.VerifyHostname(n); err != nil {
						t.Errorf("step %d: %v", i, err)
					}
				}
				for _, ip := range s.ips {
					if err := cert.Leaf.VerifyHostname(ip.String()); err != nil {
						t.Errorf("step %d: %v", i, err)
					}
				}
				if time.Until(cert.Leaf.NotAfter) < devCertRenew {
					t.Errorf("step %d: expires %s", i, cert.Leaf.NotAfter)
				}
				prev = cert
			}
			if st, err := os.Stat(filepath.Join(dir, devKeyFile)); err == nil && st.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
			}
		})
	}
}

// writeShortLivedCert stores a development certificate that expires in a
// day, as one made two years ago would.
func writeShortLivedCert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "old"},
		NotBefore: time.Now().Add(-800 * 24 * time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	if err := writeDevCertificate(dir, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, key); err != nil {
		t.Fatal(err)
	}
}

// The agent's development certificate: the same across a restart with the
// same data directory, served as PEM, and verified by a strict client
// (crypto/tls with it as the only root) for 127.0.0.1, ::1 and localhost.
func TestAgentDevCertificateAcrossRestartAndStrictClient(t *testing.T) {
	dataDir := t.TempDir()
	a := startTestAgent(t, Config{DataDir: dataDir})
	first := a.TLSCertificate()
	pemBytes := a.TLSCertificatePEM()
	onDisk, err := os.ReadFile(filepath.Join(dataDir, "tls", devCertFile))
	if err != nil || !bytes.Equal(onDisk, pemBytes) {
		t.Fatalf("certificate on disk differs from the one served (%v)", err)
	}
	a.Close()
	b := startTestAgent(t, Config{DataDir: dataDir})
	if sha256.Sum256(first.Raw) != sha256.Sum256(b.TLSCertificate().Raw) {
		t.Fatal("restart with the same data directory changed the certificate")
	}
	roots := x509.NewCertPool()
	block, _ := pem.Decode(b.TLSCertificatePEM())
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(c)
	for _, name := range []string{"127.0.0.1", "localhost"} {
		conn, err := tls.Dial("tcp", b.TLSAddr().String(), &tls.Config{RootCAs: roots, ServerName: name})
		if err != nil {
			t.Errorf("strict client for %s: %v", name, err)
			continue
		}
		conn.Close()
	}
}

// A data directory that cannot be written still gives the agent a
// certificate (with a warning), rather than no TLS at all.
func TestDevCertificateUnwritableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-directory")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cert, created, err := DevCertificate(filepath.Join(file, "tls"), nil, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if !errors.Is(err, errDevCertNotStored) || !created || cert.Leaf == nil {
		t.Fatalf("DevCertificate in an unwritable directory: created %v, leaf %v, error %v", created, cert.Leaf != nil, err)
	}
	a := startTestAgent(t, Config{DataDir: file})
	if a.TLSCertificate() == nil {
		t.Fatal("no TLS certificate when the data directory cannot be written")
	}
}
