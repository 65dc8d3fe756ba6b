package modelreq

import (
	"errors"
	"strings"
	"testing"
)

// allowList allows exactly the named models.
func allowList(models ...string) func(string) (bool, error) {
	return func(model string) (bool, error) {
		for _, m := range models {
			if m == model {
				return true, nil
			}
		}
		return false, nil
	}
}

func TestFilterListing(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		allow func(string) (bool, error)
		want  string
	}{
		{
			name:  "OpenAI listing keeps allowed ids and every other member",
			body:  `{"object":"list","data":[{"id":"llama3","object":"model","created":1,"owned_by":"vllm","max_model_len":8192},{"id":"secret-model","object":"model"},{"id":"qwen2.5:7b","object":"model"}],"extra":{"a":[1,2]}}`,
			allow: allowList("llama3", "qwen2.5:7b"),
			want:  `{"object":"list","data":[{"id":"llama3","object":"model","created":1,"owned_by":"vllm","max_model_len":8192},{"id":"qwen2.5:7b","object":"model"}],"extra":{"a":[1,2]}}`,
		},
		{
			name:  "OpenAI listing with whitespace keeps kept entries verbatim",
			body:  "{\n  \"object\" : \"list\",\n  \"data\" : [\n    { \"id\" : \"a\" },\n    { \"id\" : \"b\" }\n  ]\n}\n",
			allow: allowList("b"),
			want:  `{"object":"list","data":[{ "id" : "b" }]}`,
		},
		{
			name:  "OpenAI listing nothing allowed",
			body:  `{"object":"list","data":[{"id":"a"},{"id":"b"}]}`,
			allow: allowList(),
			want:  `{"object":"list","data":[]}`,
		},
		{
			name:  "OpenAI empty listing",
			body:  `{"object":"list","data":[]}`,
			allow: allowList("a"),
			want:  `{"object":"list","data":[]}`,
		},
		{
			name:  "OpenAI null listing stays null",
			body:  `{"object":"list","data":null}`,
			allow: allowList("a"),
			want:  `{"object":"list","data":null}`,
		},
		{
			name:  "escaped member name is the listing",
			body:  `{"object":"list","d\u0061ta":[{"id":"a"},{"id":"b"}]}`,
			allow: allowList("a"),
			want:  `{"object":"list","d\u0061ta":[{"id":"a"}]}`,
		},
		{
			name:  "every copy of a repeated listing member is filtered",
			body:  `{"data":[{"id":"a"},{"id":"b"}],"data":[{"id":"b"},{"id":"a"}]}`,
			allow: allowList("a"),
			want:  `{"data":[{"id":"a"}],"data":[{"id":"a"}]}`,
		},
		{
			name: "Ollama tags filtered by name",
			body: `{"models":[{"name":"llama3:latest","model":"llama3:latest","modified_at":"2024-05-01T10:00:00Z","size":4661224676,"digest":"365c0bd3","details":{"family":"llama","parameter_size":"8.0B"}},` +
				`{"name":"mistral:7b","model":"mistral:7b","size":1}]}`,
			allow: allowList("llama3:latest"),
			want:  `{"models":[{"name":"llama3:latest","model":"llama3:latest","modified_at":"2024-05-01T10:00:00Z","size":4661224676,"digest":"365c0bd3","details":{"family":"llama","parameter_size":"8.0B"}}]}`,
		},
		{
			name:  "Ollama entry without name falls back to model",
			body:  `{"models":[{"model":"phi3:mini"},{"model":"gemma:2b"},{"name":"","model":"tinyllama"}]}`,
			allow: allowList("gemma:2b", "tinyllama"),
			want:  `{"models":[{"model":"gemma:2b"},{"name":"","model":"tinyllama"}]}`,
		},
		{
			name:  "Ollama name decides over model",
			body:  `{"models":[{"name":"denied","model":"allowed"}]}`,
			allow: allowList("allowed"),
			want:  `{"models":[]}`,
		},
		{
			name:  "Ollama empty list",
			body:  `{"models":[]}`,
			allow: allowList("a"),
			want:  `{"models":[]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FilterListing([]byte(tt.body), tt.allow)
			if err != nil {
				t.Fatalf("FilterListing: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestFilterListingRefusesOtherShapes(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr string
	}{
		{name: "empty body", body: ``, wantErr: "invalid JSON"},
		{name: "invalid JSON", body: `{"data":[`, wantErr: "invalid JSON"},
		{name: "trailing data", body: `{"data":[]} {"data":[]}`, wantErr: "invalid JSON"},
		{name: "top-level array", body: `[{"id":"a"}]`, wantErr: "not a JSON object"},
		{name: "neither list member", body: `{"object":"list","items":[{"id":"a"}]}`, wantErr: `no "data" or "models" member`},
		{name: "both list members", body: `{"data":[],"models":[{"name":"a"}]}`, wantErr: `both "data" and "models" members`},
		{name: "list is an object", body: `{"data":{"id":"a"}}`, wantErr: `"data" is not an array`},
		{name: "list is a string", body: `{"models":"a"}`, wantErr: `"models" is not an array`},
		{name: "entry not an object", body: `{"data":["a"]}`, wantErr: `"data" entry 0: not an object`},
		{name: "entry null", body: `{"data":[{"id":"a"},null]}`, wantErr: `"data" entry 1: not an object`},
		{name: "entry without id", body: `{"data":[{"name":"a"}]}`, wantErr: `"data" entry 0: no "id"`},
		{name: "id differing in case is not id", body: `{"data":[{"ID":"a"}]}`, wantErr: `"data" entry 0: no "id"`},
		{name: "id not a string", body: `{"data":[{"id":7}]}`, wantErr: `"data" entry 0: "id" is not a string`},
		{name: "Ollama entry without name or model", body: `{"models":[{"digest":"x"}]}`, wantErr: `"models" entry 0: no "name"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FilterListing([]byte(tt.body), allowList("a"))
			if err == nil {
				t.Fatalf("got %s, want an error", got)
			}
			if !errors.Is(err, errNotListing) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want errNotListing mentioning %s", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("got body %s alongside the error", got)
			}
		})
	}
}

func TestFilterListingAllowError(t *testing.T) {
	errPolicy := errors.New("policy unavailable")
	allow := func(model string) (bool, error) {
		if model == "b" {
			return false, errPolicy
		}
		return true, nil
	}
	got, err := FilterListing([]byte(`{"object":"list","data":[{"id":"a"},{"id":"b"}]}`), allow)
	if !errors.Is(err, errPolicy) {
		t.Fatalf("err = %v, want %v", err, errPolicy)
	}
	if got != nil {
		t.Errorf("got body %s alongside the error", got)
	}
}
