package devidp

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"net/http"

	"go.uber.org/zap"
)

// loginPage is the sign-in UI the op redirects to: a server-rendered list of
// the configured users, one submit button each, that works without JavaScript.
type loginPage struct {
	storage  *storage
	users    []User
	callback func(ctx context.Context, authRequestID string) string
	logger   *zap.Logger
}

func (l *loginPage) show(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("authRequestID")
	clientID, err := l.storage.pendingAuthRequest(id)
	if err != nil {
		renderError(w, http.StatusBadRequest, "Unknown sign-in request",
			"This sign-in request is unknown or has expired. Go back to the application and sign in again.")
		return
	}
	render(w, http.StatusOK, loginTemplate, struct {
		AuthRequestID string
		ClientID      string
		Users         []User
	}{id, clientID, l.users})
}

func (l *loginPage) submit(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("authRequestID")
	email := r.PostFormValue("email")
	err := l.storage.completeLogin(id, email)
	switch {
	case errors.Is(err, errUserNotFound):
		renderError(w, http.StatusBadRequest, "Unknown user",
			"The chosen user is not configured for this development sign-in. Go back and pick one of the listed users.")
		return
	case errors.Is(err, errAuthRequestUsed):
		renderError(w, http.StatusBadRequest, "Sign-in request already used",
			"A user was already chosen for this sign-in request. Go back to the application and sign in again.")
		return
	case err != nil:
		renderError(w, http.StatusBadRequest, "Unknown sign-in request",
			"This sign-in request is unknown or has expired. Go back to the application and sign in again.")
		return
	}
	l.logger.Info("development sign-in", zap.String("email", email))
	// 303 turns the form POST into a GET of the op's callback, which issues
	// the code and redirects to the client's redirect_uri.
	http.Redirect(w, r, l.callback(r.Context(), id), http.StatusSeeOther)
}

func showLoggedOut(w http.ResponseWriter, _ *http.Request) {
	render(w, http.StatusOK, messageTemplate, message{
		Title: "Signed out",
		Text:  "You are signed out of the Gatehouse development identity provider.",
	})
}

func renderError(w http.ResponseWriter, status int, title, text string) {
	render(w, status, messageTemplate, message{Title: title, Text: text})
}

type message struct{ Title, Text string }

func render(w http.ResponseWriter, status int, tmpl *template.Template, data any) {
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		http.Error(w, "render page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// No form-action: browsers apply it to the redirects that follow the
	// POST, and those end at the client's redirect_uri on another origin.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

const pageHead = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{block "title" .}}{{end}}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
.warning{background:#fff3cd;border:2px solid #b8860b;padding:.75rem 1rem;margin:1rem 0;font-weight:600}
form button{display:block;width:100%;text-align:left;margin:.5rem 0;padding:.75rem 1rem;font-size:1rem;border:1px solid #888;border-radius:.4rem;background:#f7f7f7;cursor:pointer}
form button:hover,form button:focus{background:#e8eefc}
.email{color:#555;font-size:.9rem}
</style>
</head>
<body>
`

var loginTemplate = template.Must(template.New("login").Parse(pageHead + `{{define "title"}}Gatehouse development sign-in{{end}}
<h1>Gatehouse development sign-in</h1>
<p class="warning" role="alert">Warning: this identity provider is for development only. Anyone who can reach it can sign in as any listed user, without a password. Never use it to protect real data.</p>
<p>Signing in to <strong>{{.ClientID}}</strong>. Choose a user:</p>
<form method="post" action="login">
<input type="hidden" name="authRequestID" value="{{.AuthRequestID}}">
{{range .Users}}<button type="submit" name="email" value="{{.Email}}">{{if .Name}}<span class="name">{{.Name}}</span><br>{{end}}<span class="email">{{.Email}}</span></button>
{{end}}</form>
</body>
</html>
`))

var messageTemplate = template.Must(template.New("message").Parse(pageHead + `{{define "title"}}{{.Title}} · Gatehouse development sign-in{{end}}
<h1>{{.Title}}</h1>
<p>{{.Text}}</p>
<p class="warning">This identity provider is for development only.</p>
</body>
</html>
`))
