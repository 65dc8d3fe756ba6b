package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// Webhook request headers.
const (
	HeaderEvent     = "X-Gatehouse-Event"
	HeaderDelivery  = "X-Gatehouse-Delivery"
	HeaderTimestamp = "X-Gatehouse-Timestamp"
	HeaderSignature = "X-Gatehouse-Signature"
)

// DefaultWebhookTolerance is how far a webhook's timestamp may be from the
// receiver's clock when VerifyWebhook is given no tolerance.
const DefaultWebhookTolerance = 5 * time.Minute

// Errors VerifyWebhook returns, for errors.Is.
var (
	ErrInvalidSignature = errors.New("invalid webhook signature")
	ErrStaleTimestamp   = errors.New("webhook timestamp outside tolerance")
)

// Sign returns the X-Gatehouse-Signature value for body sent at timestamp
// (unix seconds). The timestamp is signed with the body so that a captured
// request cannot be replayed later with a fresh timestamp.
func Sign(secret, timestamp string, body []byte) string {
	return "sha256=" + hex.EncodeToString(signature(secret, timestamp, body))
}

func signature(secret, timestamp string, body []byte) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte("."))
	mac.Write(body)
	return mac.Sum(nil)
}

// VerifyWebhook checks a received Gatehouse webhook: the signature must match
// secret over the timestamp and body, and the timestamp must be within
// tolerance of now (DefaultWebhookTolerance when tolerance ≤ 0). Receivers
// should also de-duplicate on the X-Gatehouse-Delivery header, since delivery
// is at-least-once.
func VerifyWebhook(secret string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if secret == "" {
		return fmt.Errorf("%w: no secret to verify with", ErrInvalidSignature)
	}
	if tolerance <= 0 {
		tolerance = DefaultWebhookTolerance
	}
	ts := header.Get(HeaderTimestamp)
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: missing or malformed %s", ErrInvalidSignature, HeaderTimestamp)
	}
	got, ok := strings.CutPrefix(header.Get(HeaderSignature), "sha256=")
	if !ok {
		return fmt.Errorf("%w: missing or malformed %s", ErrInvalidSignature, HeaderSignature)
	}
	gotMAC, err := hex.DecodeString(got)
	if err != nil {
		return fmt.Errorf("%w: %s is not hex", ErrInvalidSignature, HeaderSignature)
	}
	if !hmac.Equal(gotMAC, signature(secret, ts, body)) {
		return ErrInvalidSignature
	}
	// Checked after the signature so that an attacker learns nothing about
	// the clock from an unsigned request.
	if skew := now.Sub(time.Unix(unix, 0)).Abs(); skew > tolerance {
		return fmt.Errorf("%w: %s off by %s", ErrStaleTimestamp, HeaderTimestamp, skew.Truncate(time.Second))
	}
	return nil
}

// webhookFor finds the configured webhook a message was queued for. The
// index is tried first so duplicate URLs keep their own secrets; the URL
// decides, so a reordered config still finds the right secret.
func (c Config) webhookFor(p webhookPayload) (WebhookConfig, bool) {
	if p.WebhookIndex >= 0 && p.WebhookIndex < len(c.Webhooks) && c.Webhooks[p.WebhookIndex].URL == p.WebhookURL {
		return c.Webhooks[p.WebhookIndex], true
	}
	for _, wh := range c.Webhooks {
		if wh.URL == p.WebhookURL {
			return wh, true
		}
	}
	return WebhookConfig{}, false
}

// deliverWebhook POSTs one outbox message to its webhook. Error texts name the
// receiver by scheme and host only: the rest of the URL may be a credential.
func (w *Worker) deliverWebhook(ctx context.Context, msg store.OutboxMessage) error {
	var p webhookPayload
	if err := json.Unmarshal(msg.Payload, &p); err != nil {
		return retryAtCap(fmt.Errorf("decode webhook payload: %w", err))
	}
	wh, ok := w.cfg.webhookFor(p)
	if !ok {
		return retryAtCap(fmt.Errorf("webhook %d (%s) is no longer configured", p.WebhookIndex, redactURL(p.WebhookURL)))
	}
	target := redactURL(wh.URL)

	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(p.Body))
	if err != nil {
		return retryAtCap(fmt.Errorf("webhook %s: build request: %w", target, unwrapURLError(err)))
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Gatehouse-Webhook/1")
	req.Header.Set(HeaderEvent, p.Event)
	req.Header.Set(HeaderDelivery, msg.ID)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(wh.Secret, ts, p.Body))

	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %v", target, unwrapURLError(err))
	}
	// Drain a little so the connection can be reused; the body itself is not
	// recorded, as a receiver may echo anything into it.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s: HTTP %s", target, resp.Status)
	}
	return nil
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the full URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// newHTTPClient is the default webhook client. Redirects are not followed: a
// 307 would resend the signed body to wherever the receiver points, and a
// 302 would silently turn the POST into a GET.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: attemptTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
