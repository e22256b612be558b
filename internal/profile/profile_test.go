package profile

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	t.Parallel()
	got, err := Parse([]byte(`# written by scripts/dev.sh
export GOOGLE_CLOUD_PROJECT=plaid-token-lifecycle-local

FIRESTORE_EMULATOR_HOST = 127.0.0.1:8790
TOKEN_ENCRYPTION_KEY="a key with spaces and a \" quote"
PLAID_SECRET='single $quoted'
EMPTY=
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"GOOGLE_CLOUD_PROJECT": "plaid-token-lifecycle-local", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8790",
		"TOKEN_ENCRYPTION_KEY": `a key with spaces and a " quote`, "PLAID_SECRET": "single $quoted", "EMPTY": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("profile (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"NO_EQUALS\n", "TWO WORDS=x\n", "=value\n", `K="unterminated\"` + "\n"} {
		if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("Parse(%q) = %v, want an error naming line 1", bad, err)
		}
	}
}
