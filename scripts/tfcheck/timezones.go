package main

import (
	"archive/zip"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// TimeZonesFile is the list of IANA time zone names the module's time_zone
// validation reads, relative to the repository root: Terraform has no time
// zone function.
const TimeZonesFile = "terraform/modules/plaid-token-lifecycle/time_zones.txt"

// GoTimeZones returns the zone names of the IANA tz database as the Go
// toolchain ships it ($GOROOT/lib/time/zoneinfo.zip), sorted: canonical
// zones and their backward-compatible links (US/Eastern, UTC, ...), which
// Cloud Scheduler accepts too. "Factory" is left out: it is no place.
func GoTimeZones() ([]string, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("finding GOROOT: %w", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "lib", "time", "zoneinfo.zip")
	z, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("reading Go's tz database: %w", err)
	}
	defer z.Close()
	var names []string
	for _, f := range z.File {
		if strings.HasSuffix(f.Name, "/") || f.Name == "Factory" {
			continue
		}
		names = append(names, f.Name)
	}
	sort.Strings(names)
	return names, nil
}

// WriteTimeZones writes GoTimeZones to path, one name a line.
func WriteTimeZones(path string) error {
	names, err := GoTimeZones()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
