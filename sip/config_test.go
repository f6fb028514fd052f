package sip

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigFileUsersAndTrunks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "switchboard.toml")
	body := `[[users]]
name = "alice"
password = "pw"

[[trunks]]
name = "carrier"
host = "127.0.0.1"
port = 5080
username = "u"
password = "p"
caller_id = "15550001111"
dids = ["+15557654321"]
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := LoadDirectory(path)
	if err != nil {
		t.Fatal(err)
	}
	if pw, ok := dir.Password("alice"); !ok || pw != "pw" {
		t.Fatalf("alice: %q %v", pw, ok)
	}
	trunks, err := LoadTrunks(path)
	if err != nil || len(trunks) != 1 || trunks[0].Addr() != "127.0.0.1:5080" || trunks[0].URI("+49301") != "sip:+49301@127.0.0.1:5080" {
		t.Fatalf("trunks %+v %v", trunks, err)
	}
	if err := os.WriteFile(path, []byte(body+"\n[[users]]\nname = \"bob\"\npasword = \"typo\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDirectory(path); err == nil || !strings.Contains(err.Error(), "pasword") {
		t.Fatalf("typo not reported: %v", err)
	}
}
