package notify

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

func newRequest() store.AccessRequest {
	return store.AccessRequest{
		ID: "0195a0c4-0000-7000-8000-000000000001", User: store.RequestUser{ID: "u-ada", Email: "ada@example.com", Name: "Ada L."},
		Name: "Ada Lovelace", Team: "Research", Purpose: "Evaluate models\n", RequestedRole: "user", Status: store.RequestPending,
		CreatedAt: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC),
	}
}

const createdBody = `{"event":"access_request.created","access_request":{"id":"0195a0c4-0000-7000-8000-000000000001",` +
	`"user_id":"u-ada","email":"ada@example.com","name":"Ada Lovelace","team":"Research","purpose":"Evaluate models\n",` +
	`"requested_role":"user","created_at":"2025-03-01T09:00:00Z"},"review_url":"https://chat.example.com/gatehouse/admin#requests"}`

const wantCreatedText = `Hello,

Ada Lovelace (ada@example.com) requests access to Gatehouse.

Team: Research
Requested role: user

Purpose:
Evaluate models

Review it: https://chat.example.com/gatehouse/admin#requests
`

// TestCreatedMessagesOnePerWebhookAndReviewer: every webhook gets
// access_request.created with the request and the review page; every
// reviewer with a well-formed address gets an email naming the requester.
func TestCreatedMessagesOnePerWebhookAndReviewer(t *testing.T) {
	c := Config{Webhooks: []WebhookConfig{hookA, hookB}, SMTP: relay, PublicURL: "https://chat.example.com"}
	now := time.Date(2025, 3, 1, 9, 0, 1, 0, time.UTC)
	msgs, err := c.CreatedMessages(CreatedEvent{Request: newRequest(), ReviewURL: "https://chat.example.com/gatehouse/admin#requests"},
		[]string{"grace@example.com", "not an address", "Frank <frank@example.com>"}, now)
	if err != nil {
		t.Fatal(err)
	}
	var channels []string
	for _, m := range msgs {
		channels = append(channels, m.Channel)
		if !m.NextAttemptAt.Equal(now) || m.ID == "" {
			t.Errorf("message %+v is not due at %v with an id", m, now)
		}
	}
	if want := []string{ChannelWebhook, ChannelWebhook, ChannelEmail, ChannelEmail}; !slices.Equal(channels, want) {
		t.Fatalf("channels %v, want %v", channels, want)
	}
	var wh webhookPayload
	if err := json.Unmarshal(msgs[1].Payload, &wh); err != nil {
		t.Fatal(err)
	}
	if wh.Event != EventCreated || wh.WebhookIndex != 1 || wh.WebhookURL != hookB.URL || string(wh.Body) != createdBody {
		t.Fatalf("webhook payload %+v with body\n%s\nwant event %s to hook B with body\n%s", wh, wh.Body, EventCreated, createdBody)
	}
	var to []string
	for _, m := range msgs[2:] {
		var email emailPayload
		if err := json.Unmarshal(m.Payload, &email); err != nil {
			t.Fatal(err)
		}
		to = append(to, email.To)
		if email.Event != EventCreated || email.RequestID != newRequest().ID ||
			email.Subject != "Gatehouse: Ada Lovelace requests access" || email.Text != wantCreatedText {
			t.Fatalf("email %+v\nwant subject %q and text\n%s", email, "Gatehouse: Ada Lovelace requests access", wantCreatedText)
		}
	}
	if want := []string{"grace@example.com", "frank@example.com"}; !slices.Equal(to, want) {
		t.Fatalf("emails to %v, want %v", to, want)
	}
}

// TestCreatedMessagesSubject: the subject names the requester by name, else
// by address, on one line whatever the name holds.
func TestCreatedMessagesSubject(t *testing.T) {
	tests := []struct {
		name, requestName, userName, want string
	}{
		{"request's name", "Ada Lovelace", "Ada L.", "Gatehouse: Ada Lovelace requests access"},
		{"user's name", "", "Ada L.", "Gatehouse: Ada L. requests access"},
		{"address", "", "", "Gatehouse: ada@example.com requests access"},
		{"control characters", "Ada\r\nBcc: x@example.com", "", "Gatehouse: Ada Bcc: x@example.com requests access"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest()
			req.Name, req.User.Name = tc.requestName, tc.userName
			msgs, err := Config{SMTP: relay}.CreatedMessages(CreatedEvent{Request: req}, []string{"grace@example.com"}, time.Now())
			if err != nil || len(msgs) != 1 {
				t.Fatalf("got %d messages, %v; want one email", len(msgs), err)
			}
			var email emailPayload
			if err := json.Unmarshal(msgs[0].Payload, &email); err != nil {
				t.Fatal(err)
			}
			if email.Subject != tc.want {
				t.Fatalf("subject %q, want %q", email.Subject, tc.want)
			}
		})
	}
}

// TestCreatedMessagesWithoutNotifiers: nothing configured, or SMTP without
// reviewers, queues nothing; a request needs its id.
func TestCreatedMessagesWithoutNotifiers(t *testing.T) {
	for name, c := range map[string]Config{"nothing": {}, "smtp only": {SMTP: relay}} {
		msgs, err := c.CreatedMessages(CreatedEvent{Request: newRequest()}, nil, time.Now())
		if err != nil || len(msgs) != 0 {
			t.Errorf("%s: got %d messages, %v; want none", name, len(msgs), err)
		}
	}
	if _, err := (Config{}).CreatedMessages(CreatedEvent{}, nil, time.Now()); err == nil {
		t.Fatal("a request without an id was accepted")
	}
}

const wantExpiredText = `Hello Ada Lovelace,

Your access request of 2025-03-01 09:00 UTC expired: nobody reviewed it in time.
You may ask again.

Ask again: https://chat.example.com/gatehouse/request-access
`

// TestExpiredMessagesTellTheRequester: an expiry goes out as a denial does:
// access_request.expired with the request to every webhook, an email to
// the requester linking the request-access page.
func TestExpiredMessagesTellTheRequester(t *testing.T) {
	c := Config{Webhooks: []WebhookConfig{hookA}, SMTP: relay, PublicURL: "https://chat.example.com"}
	req := newRequest()
	decided := time.Date(2025, 3, 31, 9, 0, 0, 0, time.UTC)
	req.DecidedAt = &decided
	msgs, err := c.ExpiredMessages(req, decided)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Channel != ChannelWebhook || msgs[1].Channel != ChannelEmail {
		t.Fatalf("messages %+v, want one webhook and one email", msgs)
	}
	var wh webhookPayload
	if err := json.Unmarshal(msgs[0].Payload, &wh); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Event   string              `json:"event"`
		Request store.AccessRequest `json:"request"`
	}
	if err := json.Unmarshal(wh.Body, &body); err != nil {
		t.Fatal(err)
	}
	if wh.Event != EventExpired || body.Event != EventExpired || body.Request.ID != req.ID ||
		body.Request.Status != store.RequestExpired || body.Request.DecidedAt == nil || !body.Request.DecidedAt.Equal(decided) {
		t.Fatalf("webhook %s body %s, want access_request.expired with the expired request", wh.Event, wh.Body)
	}
	var email emailPayload
	if err := json.Unmarshal(msgs[1].Payload, &email); err != nil {
		t.Fatal(err)
	}
	if email.To != "ada@example.com" || email.Event != EventExpired || email.Subject != "Your access request expired" ||
		email.Text != wantExpiredText || email.HTML == "" {
		t.Fatalf("email %+v\nwant one to ada@example.com with text\n%s", email, wantExpiredText)
	}

	req.User.Email = "not an address"
	if msgs, err := (Config{SMTP: relay}).ExpiredMessages(req, decided); err != nil || len(msgs) != 0 {
		t.Fatalf("requester without a usable address: %d messages, %v; want none", len(msgs), err)
	}
}
