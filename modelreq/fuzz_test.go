package modelreq

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzExtractBytes checks ExtractBytes against the parsers backends use: a
// model it returns is the one Go's encoding/json decodes into a struct field
// `json:"model"` (Ollama, through gin: keys case-folded, the last one wins)
// and the one an exact-key, last-wins parser (Python's json, Express) reads,
// so no backend can act on another model. Seeds are in
// testdata/fuzz/FuzzExtractBytes.
func FuzzExtractBytes(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		model, found, err := ExtractBytes(body, nil)
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
		// Go's encoding/json, as Ollama decodes a request.
		var ollama struct {
			Model *string `json:"model"`
		}
		if uerr := json.Unmarshal(body, &ollama); uerr != nil {
			t.Fatalf("ExtractBytes returned %q but encoding/json cannot decode the model: %v: %q", model, uerr, body)
		}
		if (ollama.Model != nil) != found || found && *ollama.Model != model {
			t.Fatalf("ExtractBytes: (%q, %v); encoding/json decodes %v: %q", model, found, ollama.Model, body)
		}
		// An exact-key parser: the model key, if present, names the same model.
		if raw, present := members["model"]; present {
			var exact string
			if uerr := json.Unmarshal(raw, &exact); uerr != nil || exact != model {
				t.Fatalf("ExtractBytes: %q; an exact-key parser reads %s: %q", model, raw, body)
			}
		}
	})
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
