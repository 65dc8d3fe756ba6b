package modelreq

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
)

// form builds a multipart body from (name, value) pairs; a name starting with
// "file:" is a file part.
func form(t *testing.T, fields ...string) (body []byte, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		name, value := fields[i], fields[i+1]
		if file, ok := strings.CutPrefix(name, "file:"); ok {
			w, _ := mw.CreateFormFile(file, "upload.bin")
			w.Write([]byte(value))
			continue
		}
		mw.WriteField(name, value)
	}
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

func TestExtractMultipart(t *testing.T) {
	encoded := func() ([]byte, string) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="model"`)
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		w, _ := mw.CreatePart(h)
		w.Write([]byte("gpt=2D4"))
		mw.Close()
		return buf.Bytes(), mw.FormDataContentType()
	}
	tests := []struct {
		name      string
		build     func() ([]byte, string)
		wantModel string
		wantFound bool
		wantErr   error
	}{
		{"model and a file", func() ([]byte, string) { return form(t, "model", "whisper-1", "file:file", "RIFF") }, "whisper-1", true, nil},
		{"model after the file", func() ([]byte, string) { return form(t, "file:file", "RIFF", "model", "whisper-1") }, "whisper-1", true, nil},
		{"no model", func() ([]byte, string) { return form(t, "file:file", "RIFF") }, "", false, nil},
		{"two models that disagree", func() ([]byte, string) { return form(t, "model", "a", "Model", "b") }, "", false, ErrAmbiguousModel},
		{"the same model twice", func() ([]byte, string) { return form(t, "model", "a", "model", "a") }, "a", true, nil},
		{"the model as a file", func() ([]byte, string) { return form(t, "file:model", "gpt-4") }, "", false, ErrAmbiguousModel},
		{"an encoded model part", encoded, "", false, ErrAmbiguousModel},
		{"not multipart", func() ([]byte, string) { return []byte(`{"model":"a"}`), "application/json" }, "", false, ErrInvalidForm},
		{"no boundary", func() ([]byte, string) { return []byte("x"), "multipart/form-data" }, "", false, ErrInvalidForm},
		{"a broken body", func() ([]byte, string) { return []byte("--b\r\nnot a part"), "multipart/form-data; boundary=b" }, "", false, ErrInvalidForm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, ct := tt.build()
			r, _ := http.NewRequest("POST", "http://gw.test/v1/audio/transcriptions", bytes.NewReader(body))
			r.Header.Set("Content-Type", ct)
			model, found, err := ExtractMultipart(r, 1<<20, nil)
			if !errors.Is(err, tt.wantErr) || tt.wantErr == nil && err != nil {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if model != tt.wantModel || found != tt.wantFound {
				t.Fatalf("got (%q, %v), want (%q, %v)", model, found, tt.wantModel, tt.wantFound)
			}
			if tt.wantErr == nil || errors.Is(tt.wantErr, ErrAmbiguousModel) {
				if got, _ := io.ReadAll(r.Body); !bytes.Equal(got, body) {
					t.Fatalf("the body was not put back byte for byte")
				}
			}
		})
	}
	big, ct := form(t, "model", "a", "file:file", strings.Repeat("x", 2048))
	r, _ := http.NewRequest("POST", "http://gw.test/v1/audio/transcriptions", bytes.NewReader(big))
	r.Header.Set("Content-Type", ct)
	if _, _, err := ExtractMultipart(r, 1024, nil); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("over the bound: %v, want ErrBodyTooLarge", err)
	}
}

func TestModelFromQuery(t *testing.T) {
	tests := []struct {
		query     string
		wantModel string
		wantFound bool
		wantErr   error
	}{
		{"model=gpt-4o-realtime", "gpt-4o-realtime", true, nil},
		{"intent=x&model=gpt%2D4o", "gpt-4o", true, nil},
		{"", "", false, nil},
		{"intent=transcription", "", false, nil},
		{"model=a&Model=b", "", false, ErrAmbiguousModel},
		{"model=a&MODEL=a", "a", true, nil},
		{"model=a;model=b", "", false, ErrInvalidForm},
		{"model=%zz", "", false, ErrInvalidForm},
	}
	for _, tt := range tests {
		model, found, err := ModelFromQuery(tt.query, nil)
		if !errors.Is(err, tt.wantErr) || tt.wantErr == nil && err != nil {
			t.Errorf("%q: err = %v, want %v", tt.query, err, tt.wantErr)
			continue
		}
		if model != tt.wantModel || found != tt.wantFound {
			t.Errorf("%q: got (%q, %v), want (%q, %v)", tt.query, model, found, tt.wantModel, tt.wantFound)
		}
	}
}
