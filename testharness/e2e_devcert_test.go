package testharness_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"regexp"
	"testing"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
)

// Done means 2 and 3 of "TLS done right": the status page links the
// development certificate; what GET /tls/cert.pem serves is what the TLS
// listener presents; a strict client (crypto/tls, the download as its
// only root, ServerName 127.0.0.1 and localhost) verifies it; and a
// restart with the same data directory presents the same certificate.
func TestDevCertificateDownloadRestartStrictClient(t *testing.T) {
	dataDir := t.TempDir()
	cfg := framework.Config{TLSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: dataDir}
	srv, stop := startStoppableServer(t, cfg, apps.Tone(1000))
	defer stop()

	page := httpGet(t, "http://"+srv.HTTPAddr()+"/")
	m := regexp.MustCompile(`http://(\S+)/tls/cert\.pem \(SHA-256 ([0-9a-f]{64})\)`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("status page does not link the certificate:\n%s", page)
	}
	pemBytes := httpGet(t, "http://"+srv.HTTPAddr()+"/tls/cert.pem")
	block, _ := pem.Decode([]byte(pemBytes))
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("GET /tls/cert.pem is not a PEM certificate: %q", pemBytes)
	}
	sum := sha256.Sum256(block.Bytes)
	if hex.EncodeToString(sum[:]) != m[2] {
		t.Fatalf("downloaded certificate %x, status page says %s", sum, m[2])
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	presented := func(addr string) [32]byte {
		t.Helper()
		var got [32]byte
		for _, name := range []string{"127.0.0.1", "localhost"} {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: name})
			if err != nil {
				t.Fatalf("strict TLS client for %s: %v", name, err)
			}
			got = sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
			conn.Close()
		}
		return got
	}
	if got := presented(srv.TLSAddr().String()); got != sum {
		t.Fatal("the TLS listener presents another certificate than the one served")
	}

	stop()
	again, stopAgain := startStoppableServer(t, cfg, apps.Tone(1000))
	defer stopAgain()
	if got := presented(again.TLSAddr().String()); got != sum {
		t.Fatalf("after a restart the server presents %x, want the kept %x", got, sum)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, res.StatusCode, err)
	}
	return string(body)
}
