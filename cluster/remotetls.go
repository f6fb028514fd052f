package cluster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// remoteTLSName is the name in the certificate nodes present to each
// other; it is checked by key, not by name (see remoteTLS).
const remoteTLSName = "switchboard-cluster"

// remoteTLS returns the TLS configurations of protoactor's remote (the
// gRPC connections between nodes) for a cluster secret: every node
// derives the same Ed25519 key from the secret (HKDF-SHA256), presents a
// certificate of that key, and accepts a peer — server or client, TLS 1.3,
// mutual — only if its certificate holds that same key. So only holders
// of the secret can connect to a node's --cluster-addr, and what the
// nodes say to each other is encrypted.
func remoteTLS(secret []byte) (server, client *tls.Config, err error) {
	seed, err := hkdf.Key(sha256.New, secret, nil, "switchboard cluster remote tls v1", ed25519.SeedSize)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: remote tls key: %w", err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	pub := key.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: remoteTLSName},
		DNSNames:     []string{remoteTLSName},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: remote tls certificate: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	pinned := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("cluster: peer presented no certificate")
		}
		c, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("cluster: peer certificate: %w", err)
		}
		if k, ok := c.PublicKey.(ed25519.PublicKey); !ok || !bytes.Equal(k, pub) {
			return errors.New("cluster: peer does not hold the cluster secret")
		}
		return nil
	}
	server = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAnyClientCert, VerifyPeerCertificate: pinned}
	// The standard chain check is replaced by the pin: the certificate is
	// self-signed, and what proves the peer is its key.
	client = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ServerName: remoteTLSName,
		InsecureSkipVerify: true, VerifyPeerCertificate: pinned}
	return server, client, nil
}

// remoteOptions are protoactor remote's options: with a secret, its gRPC
// server and connections use remoteTLS; without, plain gRPC (as
// protoactor's default).
func remoteOptions(secret []byte) ([]remote.ConfigOption, error) {
	if len(secret) == 0 {
		return nil, nil
	}
	srv, cli, err := remoteTLS(secret)
	if err != nil {
		return nil, err
	}
	return []remote.ConfigOption{
		remote.WithServerOptions(grpc.Creds(credentials.NewTLS(srv))),
		remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(cli))),
	}, nil
}
