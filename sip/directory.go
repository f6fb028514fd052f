package sip

import (
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/BurntSushi/toml"
)

// Account is a SIP user who may register and authenticate.
type Account struct {
	Name     string `toml:"name"`
	Password string `toml:"password"`
	// DisplayName is the caller id name of the user's calls when their
	// phone's From carries none (Call.Caller, and what Dial passes on).
	DisplayName string `toml:"display_name"`
	// SRTP is the user's SRTP policy ("", "optional", "required"):
	// whether calls to the user offer RTP/SAVP, and whether the user's
	// plain RTP offers are refused (488).
	SRTP SRTPPolicy `toml:"srtp"`
}

// Directory is the set of accounts, usually read from the [[users]] tables
// of a TOML file:
//
//	[[users]]
//	name = "alice"
//	password = "correct horse"
type Directory struct {
	mu       sync.RWMutex
	accounts map[string]Account
}

// NewDirectory returns a directory holding accounts.
func NewDirectory(accounts ...Account) *Directory {
	d := &Directory{accounts: map[string]Account{}}
	for _, a := range accounts {
		d.accounts[a.Name] = a
	}
	return d
}

// LoadDirectory reads the [[users]] tables of a TOML file.
func LoadDirectory(path string) (*Directory, error) {
	f, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	for i, u := range f.Users {
		if u.Name == "" || u.Password == "" {
			return nil, fmt.Errorf("sip: users file %s: user %d needs a name and a password", path, i+1)
		}
	}
	return NewDirectory(f.Users...), nil
}

// Password returns the password of user.
func (d *Directory) Password(user string) (string, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	a, ok := d.accounts[user]
	return a.Password, ok
}

// Lookup returns the account of user.
func (d *Directory) Lookup(user string) (Account, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	a, ok := d.accounts[user]
	return a, ok
}

// Names returns the account names, sorted.
func (d *Directory) Names() []string {
	d.mu.RLock()
	out := make([]string, 0, len(d.accounts))
	for n := range d.accounts {
		out = append(out, n)
	}
	d.mu.RUnlock()
	sort.Strings(out)
	return out
}

// configFile is the TOML file the binary reads accounts and trunks from;
// one file may hold both tables.
type configFile struct {
	Users  []Account `toml:"users"`
	Trunks []Trunk   `toml:"trunks"`
}

// readConfigFile reads a TOML config file. Unknown keys are an error, so a
// typo does not silently drop a setting.
func readConfigFile(path string) (configFile, error) {
	var f configFile
	data, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return f, fmt.Errorf("sip: %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return f, fmt.Errorf("sip: %s: unknown setting %q", path, und[0].String())
	}
	return f, nil
}
