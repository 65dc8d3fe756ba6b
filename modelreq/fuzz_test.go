package modelreq

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzExtractBytes checks ExtractBytes against encoding/json: a model it
// returns is the one encoding/json reads from the same body, and a body with a
// repeated top-level "model" key never yields a model. Seeds are in
// testdata/fuzz/FuzzExtractBytes.
func FuzzExtractBytes(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		model, found, err := ExtractBytes(body)
		if err != nil {
			if model != "" || found {
				t.Fatalf("error %v came with model %q found=%v", err, model, found)
			}
			if !errors.Is(err, ErrInvalidJSON) && !errors.Is(err, ErrAmbiguousModel) {
				t.Fatalf("unexpected error %v", err)
			}
			// Refusing is right only for what RFC 8259 and UTF-8 refuse too.
			if errors.Is(err, ErrInvalidJSON) && json.Valid(body) && utf8.Valid(body) && bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{")) {
				t.Fatalf("ErrInvalidJSON for a valid JSON object: %q", body)
			}
			return
		}

		var members map[string]json.RawMessage
		if uerr := json.Unmarshal(body, &members); uerr != nil || members == nil {
			t.Fatalf("ExtractBytes accepted a body encoding/json rejects (%v): %q", uerr, body)
		}
		raw, present := members["model"]
		if present != found {
			t.Fatalf("found=%v but encoding/json sees model present=%v: %q", found, present, body)
		}
		if !found {
			if model != "" {
				t.Fatalf("model %q without found", model)
			}
			return
		}
		var want string
		if uerr := json.Unmarshal(raw, &want); uerr != nil {
			t.Fatalf("model %q returned but encoding/json reads %s: %v", model, raw, uerr)
		}
		if model != want {
			t.Fatalf("model %q, encoding/json reads %q: %q", model, want, body)
		}
		if n := countTopLevelModelKeys(t, body); n != 1 {
			t.Fatalf("model %q returned from a body with %d top-level model keys: %q", model, n, body)
		}
	})
}

// countTopLevelModelKeys counts, with encoding/json's tokenizer, the
// top-level keys that unescape to "model" (the map above keeps only the last).
func countTopLevelModelKeys(t *testing.T, body []byte) int {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		t.Fatalf("token: %v", err)
	}
	n := 0
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			t.Fatalf("token: %v", err)
		}
		if key == "model" {
			n++
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("decode: %v", err)
		}
	}
	return n
}

// FuzzFilterListing checks that a filtered listing is valid JSON listing only
// allowed models. The fuzzed allow rule keeps names containing "ok"; seeds are
// in testdata/fuzz/FuzzFilterListing.
func FuzzFilterListing(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		allowed := func(model string) bool { return strings.Contains(model, "ok") }
		out, err := FilterListing(body, func(model string) (bool, error) { return allowed(model), nil })
		if err != nil {
			if out != nil {
				t.Fatalf("error %v came with output %q", err, out)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("output is not valid JSON: %q from %q", out, body)
		}
		// Every listing member, however its key is spelt and however often it
		// repeats, must now hold allowed entries only.
		dec := json.NewDecoder(bytes.NewReader(out))
		if _, err := dec.Token(); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			var value json.RawMessage
			if err := dec.Decode(&value); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			if key != "data" && key != "models" {
				continue
			}
			var entries []map[string]json.RawMessage
			if err := json.Unmarshal(value, &entries); err != nil {
				t.Fatalf("listing %s in output %q: %v", key, out, err)
			}
			for _, entry := range entries {
				for _, field := range []string{"id", "name", "model"} {
					var name string
					if json.Unmarshal(entry[field], &name) != nil || name == "" {
						continue
					}
					// The id (OpenAI) or the name, or model without a name
					// (Ollama), is the one that was checked.
					checked := key == "data" && field == "id" ||
						key == "models" && (field == "name" || field == "model" && !hasString(entry["name"]))
					if checked && !allowed(name) {
						t.Fatalf("output lists %s %q that allow refused: %q", field, name, out)
					}
				}
			}
		}
	})
}

func hasString(raw json.RawMessage) bool {
	var s string
	return json.Unmarshal(raw, &s) == nil && s != ""
}
