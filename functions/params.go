package functions

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// accepts is what an endpoint reads besides its path: the query parameters
// it knows and whether it reads a JSON body. Anything else in a request is
// refused with 400 naming it (DESIGN §4): a misspelled `dry_run` must never
// fall back to a destructive default, and a body an endpoint does not read
// must not look honoured.
type accepts struct {
	query []string
	body  bool
}

// checkRequest refuses a query that does not parse, query parameters the
// endpoint does not know, and a body where it takes none.
func checkRequest(r *http.Request, a accepts) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return lifecycle.Errorf(lifecycle.CodeInvalid, "the query string does not parse: %s", queryErrorText(err))
	}
	var unknown []string
	for name := range q {
		if !slices.Contains(a.query, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		unknown = shortList(unknown)
		return lifecycle.Errorf(lifecycle.CodeInvalid, "unknown query parameter%s %s; %s",
			plural(len(unknown)), quoteList(unknown), takesText(a.query))
	}
	if !a.body {
		var one [1]byte
		n, err := io.ReadFull(r.Body, one[:])
		if n > 0 {
			return lifecycle.Errorf(lifecycle.CodeInvalid, "this endpoint takes no request body; %s", takesText(a.query))
		}
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return lifecycle.Errorf(lifecycle.CodeTooLarge, "request body larger than %d bytes", tooLarge.Limit)
		}
	}
	return nil
}

// decodeBody reads the request body as one JSON object into v, refusing
// fields v does not have (naming them), values of the wrong type and
// anything after the object. An empty body is the empty object.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		return nil // no body: every field takes its zero value
	}
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			return lifecycle.Errorf(lifecycle.CodeInvalid, "the request body must be a single JSON object")
		}
		return nil
	}
	var (
		tooLarge *http.MaxBytesError
		syntax   *json.SyntaxError
		typ      *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooLarge):
		return lifecycle.Errorf(lifecycle.CodeTooLarge, "request body larger than %d bytes", tooLarge.Limit)
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return lifecycle.Errorf(lifecycle.CodeInvalid, "the request body is not valid JSON")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return lifecycle.Errorf(lifecycle.CodeInvalid, "the request body must be a JSON object")
		}
		return lifecycle.Errorf(lifecycle.CodeInvalid, "field %q of the request body must be %s", typ.Field, jsonKind(typ.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json names the field only in its message.
		return lifecycle.Errorf(lifecycle.CodeInvalid, "unknown field %s in the request body",
			strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return lifecycle.Errorf(lifecycle.CodeInvalid, "the request body does not decode: not the JSON object this endpoint takes")
	}
}

// jsonKind names a Go kind as JSON calls it.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "a number"
	default:
		return "of another type"
	}
}

// shortList keeps an error message about caller-chosen names short: the
// first few, each cut to a sensible length.
func shortList(names []string) []string {
	const maxNames, maxLen = 5, 40
	out := make([]string, 0, min(len(names), maxNames+1))
	for i, n := range names {
		if i == maxNames {
			out = append(out, fmt.Sprintf("and %d more", len(names)-maxNames))
			break
		}
		if len(n) > maxLen {
			n = strings.ToValidUTF8(n[:maxLen], "") + "…"
		}
		out = append(out, n)
	}
	return out
}

func takesText(query []string) string {
	if len(query) == 0 {
		return "this endpoint takes no query parameters"
	}
	return "this endpoint takes " + quoteList(query)
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// queryErrorText is what url.ParseQuery found, without echoing more of the
// query than its own message does.
func queryErrorText(err error) string {
	var esc url.EscapeError
	if errors.As(err, &esc) {
		return "invalid percent-encoding"
	}
	return "invalid syntax"
}
