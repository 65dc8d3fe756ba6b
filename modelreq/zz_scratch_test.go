package modelreq

import (
	"bytes"
	"encoding/json"
	"testing"
)

func decoderExtract(body []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return "", false
	}
	var model string
	found := false
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return "", false
		}
		if k == "model" {
			var s string
			if err := dec.Decode(&s); err != nil {
				return "", false
			}
			model, found = s, true
			continue
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "", false
		}
	}
	return model, found
}

func BenchmarkDecoderBaseline(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if m, _ := decoderExtract(chatBody); m == "" {
			b.Fatal()
		}
	}
}

func BenchmarkJSONValid(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		json.Valid(chatBody)
	}
}
