package modelreq

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
)

// ErrInvalidForm means a multipart body or a query cannot be read the one
// way every backend would; the caller answers 400.
var ErrInvalidForm = errors.New("request form is not well formed")

// maxFieldBytes bounds a model field's value in a form.
const maxFieldBytes = 4096

// ExtractMultipart reads a multipart/form-data body (audio transcriptions,
// image edits) up to limit bytes and puts an identical body back on r, as
// Extract does. Every part whose field name equals one of keys under case
// folding is a model field: each must be a plain field (not a file), and all
// must name the same model, or the body is ErrAmbiguousModel.
func ExtractMultipart(r *http.Request, limit int64, keys []string) (model string, found bool, err error) {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" || params["boundary"] == "" {
		return "", false, fmt.Errorf("%w: Content-Type must be multipart/form-data with a boundary", ErrInvalidForm)
	}
	body, err := ReadBody(r, limit)
	if err != nil {
		return "", false, err
	}
	if len(keys) == 0 {
		keys = defaultKeys
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return model, found, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("%w: %v", ErrInvalidForm, err)
		}
		if !isModelKey(part.FormName(), keys) {
			continue
		}
		value, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
		if err != nil {
			return "", false, fmt.Errorf("%w: %v", ErrInvalidForm, err)
		}
		// A file, an encoded part or an overlong value is read differently
		// by different multipart parsers.
		if part.FileName() != "" || part.Header.Get("Content-Transfer-Encoding") != "" ||
			len(value) > maxFieldBytes || found && string(value) != model {
			return "", false, ErrAmbiguousModel
		}
		model, found = string(value), true
	}
}

// ModelFromQuery finds the model a query names (the Realtime API's
// ?model=…). Keys compare case-folded; repeated keys must agree. A query a
// backend could split differently (a ";" separator, a bad escape) is
// ErrInvalidForm.
func ModelFromQuery(rawQuery string, keys []string) (model string, found bool, err error) {
	if len(keys) == 0 {
		keys = defaultKeys
	}
	if strings.Contains(rawQuery, ";") {
		return "", false, fmt.Errorf("%w: a query with ';' is read differently by different servers", ErrInvalidForm)
	}
	for pair := range strings.SplitSeq(rawQuery, "&") {
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			return "", false, fmt.Errorf("%w: %v", ErrInvalidForm, err)
		}
		if !isModelKey(key, keys) {
			continue
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return "", false, fmt.Errorf("%w: %v", ErrInvalidForm, err)
		}
		if found && value != model {
			return "", false, ErrAmbiguousModel
		}
		model, found = value, true
	}
	return model, found, nil
}

func isModelKey(name string, keys []string) bool {
	for _, k := range keys {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}
