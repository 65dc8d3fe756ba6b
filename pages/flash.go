package pages

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/actions"
	"github.com/gatehouse/gatehouse/core"
)

// A token form is answered with a redirect (post/redirect/get), so that
// reloading the page that follows never mints another token. The new token's
// string reaches that page in a flash cookie: sealed under the master secret,
// bound to the session and the page, scoped to the page's path, HttpOnly and
// SameSite=Strict, living two minutes and cleared by the answer that shows
// it. It never appears in a URL and Gatehouse keeps no copy; a cookie rather
// than the instance's memory because the browser's next request may reach
// another instance.

// flashLifetime is how long a new token waits for its page.
const flashLifetime = 2 * time.Minute

// flashLost is what a page says when a token's flash came too late to open.
const flashLost = "The new token can no longer be shown. Revoke it and create another."

type sealedFlash struct {
	Expires int64                `json:"exp"`
	Token   actions.CreatedToken `json:"tok"`
}

func (p *Pages) flashCookie(page, value string, maxAge int) *http.Cookie {
	name := "gatehouse_new_token"
	if p.rt.Secure {
		name = "__Secure-" + name
	}
	return &http.Cookie{Name: name, Value: value, Path: p.rt.PagesPrefix + page, MaxAge: maxAge,
		Secure: p.rt.Secure, HttpOnly: true, SameSite: http.SameSiteStrictMode}
}

// flashAAD binds a flash to the session that minted the token and to its page.
func flashAAD(sub *core.Subject, page string) []byte {
	return []byte("new-token\x00" + sub.Session.ID + "\x00" + page)
}

// setFlash hands tok to the page the form redirects to; tokens are minted
// from a session only (actions.CreateToken).
func (p *Pages) setFlash(w http.ResponseWriter, sub *core.Subject, page string, tok *actions.CreatedToken) error {
	plain, err := json.Marshal(sealedFlash{Expires: time.Now().Add(flashLifetime).Unix(), Token: *tok})
	if err != nil {
		return err
	}
	sealed, err := p.rt.FlashSealer.Seal(plain, flashAAD(sub, page))
	if err != nil {
		return err
	}
	http.SetCookie(w, p.flashCookie(page, base64.RawURLEncoding.EncodeToString(sealed), int(flashLifetime/time.Second)))
	return nil
}

// takeFlash returns the new token waiting for page, once: the cookie is
// cleared whatever it holds. lost reports a flash that no longer opens
// (expired, or from another session).
func (p *Pages) takeFlash(w http.ResponseWriter, r *http.Request, sub *core.Subject, page string) (tok *actions.CreatedToken, lost bool) {
	c, err := r.Cookie(p.flashCookie(page, "", 0).Name)
	if err != nil {
		return nil, false
	}
	http.SetCookie(w, p.flashCookie(page, "", -1))
	if sub.Session == nil {
		return nil, true
	}
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return nil, true
	}
	plain, err := p.rt.FlashSealer.Open(sealed, flashAAD(sub, page))
	if err != nil {
		return nil, true
	}
	var f sealedFlash
	if err := json.Unmarshal(plain, &f); err != nil || time.Now().Unix() > f.Expires {
		return nil, true
	}
	return &f.Token, false
}
