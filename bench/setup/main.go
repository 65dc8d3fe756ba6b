// Command setup signs in to a Gatehouse running the development identity
// provider as its bootstrap admin and prints, for the load script, a session
// cookie and a fresh personal API token:
//
//	COOKIE='gatehouse_session=…'
//	TOKEN='eyJ…'
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "Gatehouse public URL")
	email := flag.String("email", "alice@example.com", "a dev_idp user that is bootstrap_admin")
	limits := flag.Bool("limits", false, "give the token and the admin role quotas too high to reach, so that every request is metered and checked")
	flag.Parse()

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// Follow the sign-in to the provider's page, pick the user, and follow the
	// redirects back to the callback, which sets the session cookie.
	next := *base + "/api/auth/login"
	var page string
	var pageURL *url.URL
	for i := 0; i < 6 && page == ""; i++ {
		resp := must(c.Get(next))
		body := readAll(resp)
		if resp.StatusCode == http.StatusOK {
			page, pageURL = body, resp.Request.URL
			break
		}
		next = resolve(resp.Request.URL, resp.Header.Get("Location"))
	}
	m := regexp.MustCompile(`name="authRequestID" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		log.Fatalf("no development sign-in page at %s", pageURL)
	}
	resp := must(c.PostForm(resolve(pageURL, "login"), url.Values{"authRequestID": {m[1]}, "email": {*email}}))
	for i := 0; i < 6 && resp.StatusCode/100 == 3; i++ {
		readAll(resp)
		resp = must(c.Get(resolve(resp.Request.URL, resp.Header.Get("Location"))))
	}
	readAll(resp)

	u, _ := url.Parse(*base)
	var cookie string
	for _, ck := range jar.Cookies(u) {
		if strings.HasSuffix(ck.Name, "gatehouse_session") {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	if cookie == "" {
		log.Fatal("sign-in did not produce a session cookie")
	}
	high := map[string]any{"tokens_per_day": 1_000_000_000_000, "requests_per_minute": 1_000_000_000}
	token := map[string]any{"name": "load test", "kind": "personal", "expires_in": "24h"}
	if *limits {
		token["limits"] = high
		setRoleLimits(c, *base, "admin", high)
	}
	body, _ := json.Marshal(token)
	req, _ := http.NewRequest("POST", *base+"/api/tokens", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	tresp := must(c.Do(req))
	var created struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(readAll(tresp)), &created); err != nil || created.Token == "" {
		log.Fatalf("creating a token: status %d", tresp.StatusCode)
	}
	fmt.Printf("COOKIE='%s'\nTOKEN='%s'\n", cookie, created.Token)
}

// setRoleLimits puts limits on a role, keeping the rest of its settings.
func setRoleLimits(c *http.Client, base, role string, limits map[string]any) {
	var settings struct {
		Roles map[string]map[string]any `json:"roles"`
	}
	resp := must(c.Get(base + "/api/settings"))
	if err := json.Unmarshal([]byte(readAll(resp)), &settings); err != nil || resp.StatusCode != http.StatusOK {
		log.Fatalf("reading the settings: status %d, %v", resp.StatusCode, err)
	}
	r := settings.Roles[role]
	if r == nil {
		r = map[string]any{}
	}
	r["limits"] = limits
	body, _ := json.Marshal(r)
	req, _ := http.NewRequest("PUT", base+"/api/settings/roles/"+role, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if resp := must(c.Do(req)); resp.StatusCode != http.StatusOK {
		log.Fatalf("setting the limits of role %s: status %d: %s", role, resp.StatusCode, readAll(resp))
	} else {
		readAll(resp)
	}
}

func must(resp *http.Response, err error) *http.Response {
	if err != nil {
		log.Fatal(err)
	}
	return resp
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func resolve(base *url.URL, ref string) string {
	u, err := base.Parse(ref)
	if err != nil {
		log.Fatal(err)
	}
	return u.String()
}
