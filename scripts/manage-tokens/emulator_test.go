package main

import (
	"os"
	"testing"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
)

func TestMain(m *testing.M) { os.Exit(emulator.Main(m)) }
