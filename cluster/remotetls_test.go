package cluster

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// Two nodes with the same secret complete a mutual TLS 1.3 handshake; a
// node with another secret, or a client without a certificate, fails it.
func TestRemoteTLSNeedsTheSecret(t *testing.T) {
	secret := []byte("test-cluster-secret-0123456789")
	srv, cli, err := remoteTLS(secret)
	if err != nil {
		t.Fatal(err)
	}
	_, otherCli, err := remoteTLS([]byte("another-secret-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	handshake := func(client *tls.Config) (serverErr, clientErr error) {
		done := make(chan error, 1)
		go func() {
			a, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			defer a.Close()
			_ = a.SetDeadline(time.Now().Add(5 * time.Second))
			s := tls.Server(a, srv)
			err = s.Handshake()
			if err == nil { // TLS 1.3: the client's certificate is checked after the client's handshake returns
				_, err = s.Read(make([]byte, 1))
			}
			done <- err
		}()
		b, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = b.SetDeadline(time.Now().Add(5 * time.Second))
		c := tls.Client(b, client)
		clientErr = c.Handshake()
		if clientErr == nil {
			_, clientErr = c.Write([]byte("x"))
		}
		b.Close()
		return <-done, clientErr
	}
	if s, c := handshake(cli); s != nil || c != nil {
		t.Fatalf("same secret: server %v, client %v", s, c)
	}
	if s, c := handshake(otherCli); s == nil && c == nil {
		t.Error("another secret: the handshake succeeded")
	}
	noCert := cli.Clone()
	noCert.Certificates = nil
	if s, _ := handshake(noCert); s == nil {
		t.Error("a client without a certificate was taken")
	}
	if opts, err := remoteOptions(nil); err != nil || opts != nil {
		t.Errorf("no secret: %v options, %v", len(opts), err)
	}
}
