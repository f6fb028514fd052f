package main

import (
	"os"
	"strings"
	"testing"
)

// The README promises its users and caller id example is this program, verbatim.
func TestREADMEShowsThisExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+string(src)+"```") {
		t.Fatal("README.md's users example differs from examples/pbx/main.go")
	}
}
