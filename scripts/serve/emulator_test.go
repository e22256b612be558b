package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
)

func TestMain(m *testing.M) {
	code := emulator.Main(m)
	if serveBinary.path != "" { // built by buildServe
		os.RemoveAll(filepath.Dir(serveBinary.path))
	}
	os.Exit(code)
}
