package modelreq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// errNotListing is wrapped by every FilterListing error about the body's shape.
var errNotListing = errors.New("not a model listing")

// listingFormat names the member holding the model list and the entry fields
// naming a model, first match wins.
type listingFormat struct {
	member    string
	nameField []string
}

var (
	openAIListing = listingFormat{member: "data", nameField: []string{"id"}}
	ollamaListing = listingFormat{member: "models", nameField: []string{"name", "model"}}
)

// FilterListing rewrites a model listing response body so it contains only
// the models allow says yes to. Formats: OpenAI `GET /v1/models`
// ({"object":"list","data":[{"id":…},…]}, filtered by "id") and Ollama
// `GET /api/tags` ({"models":[{"name":…,"model":…},…]}, filtered by "name",
// falling back to "model"). Members and kept entries are copied byte for byte,
// in their order. A body of any other shape, an entry without a name, or an
// error from allow is an error: the caller then refuses rather than leak an
// unfiltered list.
func FilterListing(body []byte, allow func(model string) (bool, error)) ([]byte, error) {
	if !json.Valid(body) {
		return nil, fmt.Errorf("%w: invalid JSON", errNotListing)
	}
	members, err := objectMembers(body)
	if err != nil {
		return nil, err
	}
	format, err := detectListing(members)
	if err != nil {
		return nil, err
	}

	out := bytes.NewBuffer(make([]byte, 0, len(body)))
	out.WriteByte('{')
	for n, m := range members {
		if n > 0 {
			out.WriteByte(',')
		}
		out.Write(m.rawKey)
		out.WriteByte(':')
		if m.key != format.member {
			out.Write(m.value)
			continue
		}
		if err := filterEntries(out, m.value, format, allow); err != nil {
			return nil, err
		}
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

// member is one top-level member; rawKey is the key as written, quotes
// included, so the output keeps its spelling.
type member struct {
	key    string
	rawKey []byte
	value  json.RawMessage
}

// objectMembers splits a valid JSON object into its members, in order and
// keeping duplicates, so none can slip through unfiltered.
func objectMembers(body []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotListing, err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: not a JSON object", errNotListing)
	}
	var members []member
	for dec.More() {
		keyStart := skipSpace(body, int(dec.InputOffset()))
		if keyStart < len(body) && body[keyStart] == ',' {
			keyStart = skipSpace(body, keyStart+1)
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errNotListing, err)
		}
		key, _ := tok.(string)
		keyEnd := int(dec.InputOffset())
		if keyEnd <= keyStart || body[keyStart] != '"' || body[keyEnd-1] != '"' {
			return nil, fmt.Errorf("%w: cannot locate member %q", errNotListing, key)
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, fmt.Errorf("%w: member %q: %w", errNotListing, key, err)
		}
		members = append(members, member{key: key, rawKey: body[keyStart:keyEnd], value: value})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotListing, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the object", errNotListing)
	}
	return members, nil
}

// detectListing picks the format from the list member present. A body with
// both, or neither, is refused: which list a client reads is then unknown.
func detectListing(members []member) (listingFormat, error) {
	var isOpenAI, isOllama bool
	for _, m := range members {
		isOpenAI = isOpenAI || m.key == openAIListing.member
		isOllama = isOllama || m.key == ollamaListing.member
	}
	switch {
	case isOpenAI && !isOllama:
		return openAIListing, nil
	case isOllama && !isOpenAI:
		return ollamaListing, nil
	case isOpenAI && isOllama:
		return listingFormat{}, fmt.Errorf("%w: both %q and %q members", errNotListing, openAIListing.member, ollamaListing.member)
	default:
		return listingFormat{}, fmt.Errorf("%w: no %q or %q member", errNotListing, openAIListing.member, ollamaListing.member)
	}
}

// filterEntries writes the array list with only the allowed entries. A null
// list is an empty one and stays null.
func filterEntries(out *bytes.Buffer, list json.RawMessage, format listingFormat, allow func(string) (bool, error)) error {
	if string(list) == "null" {
		out.WriteString("null")
		return nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(list, &entries); err != nil {
		return fmt.Errorf("%w: %q is not an array", errNotListing, format.member)
	}
	out.WriteByte('[')
	kept := 0
	for n, entry := range entries {
		name, err := entryName(entry, format)
		if err != nil {
			return fmt.Errorf("%w: %q entry %d: %w", errNotListing, format.member, n, err)
		}
		ok, err := allow(name)
		if err != nil {
			return fmt.Errorf("check model %q: %w", name, err)
		}
		if !ok {
			continue
		}
		if kept > 0 {
			out.WriteByte(',')
		}
		out.Write(entry)
		kept++
	}
	out.WriteByte(']')
	return nil
}

// entryName returns the first name field of the entry that is a non-empty
// string. Keys are matched exactly: encoding/json's struct decoding would also
// take "ID" for "id".
func entryName(entry json.RawMessage, format listingFormat) (string, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(entry, &fields); err != nil || fields == nil {
		return "", errors.New("not an object")
	}
	for _, field := range format.nameField {
		raw, present := fields[field]
		if !present {
			continue
		}
		var name string
		if err := json.Unmarshal(raw, &name); err != nil {
			return "", fmt.Errorf("%q is not a string", field)
		}
		if name != "" {
			return name, nil
		}
	}
	return "", fmt.Errorf("no %q", format.nameField[0])
}
