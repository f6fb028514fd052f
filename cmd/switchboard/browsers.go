package main

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/switchboard-voice/switchboard/bridge"
)

// tokenKey returns the key that signs browser tokens: kept in
// DIR/token.key (created with 32 random bytes, mode 0600) so tokens stay
// valid across restarts and `switchboard token` can mint them; a fresh
// random key when dir is "" (nothing kept).
func tokenKey(dir string) ([]byte, error) {
	if dir == "" {
		key := make([]byte, 32)
		_, err := rand.Read(key)
		return key, err
	}
	path := filepath.Join(dir, "token.key")
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) < 16 {
			return nil, fmt.Errorf("%s: shorter than 16 bytes", path)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// tokenCmd is `switchboard token`: it mints a token for the softphone and
// prints it with a ready link.
func tokenCmd(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	user := fs.String("user", "", "the user the token logs in as (required), e.g. alice")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid, e.g. 1h or 30m")
	dataDir := fs.String("data-dir", defaultDataDir(), "the server's --data-dir (where token.key is)")
	httpAddr := fs.String("http-addr", "localhost:8080", "the server's HTTP address, for the link")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: switchboard token --user NAME [--ttl 1h] [--data-dir DIR]\n\nMints a token for the browser softphone, signed with the server's key.\nExample: switchboard token --user alice --ttl 8h")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("token: --user is required")
	}
	if *ttl <= 0 {
		return errors.New("token: --ttl must be positive")
	}
	if *dataDir == "-" || *dataDir == "" {
		return errors.New("token: needs the server's --data-dir, where its token key is kept")
	}
	key, err := tokenKey(*dataDir)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	tokens, err := bridge.NewTokens(key)
	if err != nil {
		return err
	}
	tok := tokens.MintFor(*user, *ttl)
	fmt.Printf("%s\n\nSoftphone: http://%s/?token=%s\n", tok, *httpAddr, url.QueryEscape(tok))
	return nil
}
