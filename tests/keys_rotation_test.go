package tests

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// A short key_prepublish, so that the next key is ready within a test.
const quickPrepublish = "\t\tkey_prepublish 3s"

// rotateSigningKeys asks admin's instance to rotate the signing keys,
// waiting while the next key is not ready yet (409 key_not_ready), and
// returns the answer.
func rotateSigningKeys(t *testing.T, admin *client) map[string]any {
	t.Helper()
	var rot *response
	waitFor(t, 15*time.Second, "the next signing key to be ready", func() string {
		rot = admin.do("POST", "/api/keys/rotate", nil)
		if rot.StatusCode == http.StatusConflict && strings.Contains(rot.text(), `"key_not_ready"`) {
			return rot.text()
		}
		return ""
	})
	if rot.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/keys/rotate: %d %s", rot.StatusCode, rot.body)
	}
	return rot.json(t)
}

// jwksKIDs fetches the JWKS and returns its kids in order.
func jwksKIDs(t *testing.T, in *instance) []string {
	t.Helper()
	set, err := jwk.Parse(in.newClient().get("/.well-known/jwks.json").body)
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var kids []string
	for i := range set.Len() {
		k, _ := set.Key(i)
		kids = append(kids, k.KeyID())
	}
	return kids
}

// verifiesWith reports why token does not verify as issued by in with the
// key set a verifier fetched, or "" when it does.
func verifiesWith(set jwk.Set, token, issuer, audience string) string {
	if _, err := jwt.Parse([]byte(token), jwt.WithKeySet(set), jwt.WithValidate(true), jwt.WithIssuer(issuer), jwt.WithAudience(audience)); err != nil {
		return err.Error()
	}
	return ""
}

// TestKeyRotationIsStaged: a backend that fetched the JWKS before a rotation
// verifies the tokens and assertions signed right after it (issue 10, item
// 4; spec §7a), and a rotation before the next key has been published for
// key_prepublish is refused.
func TestKeyRotationIsStaged(t *testing.T) {
	in := startInstance(t, instanceConfig{extraGlobal: quickPrepublish})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	before := createToken(t, bobC, map[string]any{"name": "before", "kind": "personal"})["token"].(string)
	oldKID := decodeSegment(t, before, 0)["kid"].(string)

	// The backend's cached copy of the keys, fetched before the rotation.
	jwks := in.newClient().get("/.well-known/jwks.json")
	if cc := jwks.Header.Get("Cache-Control"); cc != "public, max-age=1" {
		t.Fatalf("JWKS Cache-Control = %q, want max-age half of key_prepublish 3s", cc)
	}
	cached, err := jwk.Parse(jwks.body)
	if err != nil {
		t.Fatal(err)
	}
	if cached.Len() != 2 {
		t.Fatalf("JWKS before the rotation = %s, want the current and the next key", jwks.body)
	}
	current, _ := cached.Key(0)
	next, _ := cached.Key(1)
	if current.KeyID() != oldKID || next.KeyID() == oldKID {
		t.Fatalf("JWKS kids %s, %s; want the current key %s first, then the next key", current.KeyID(), next.KeyID(), oldKID)
	}

	t.Run("rotating before the next key was published for key_prepublish is refused", func(t *testing.T) {
		early := admin.do("POST", "/api/keys/rotate", nil)
		expectProblem(t, early, http.StatusConflict, "key_not_ready")
		detail, _ := early.json(t)["detail"].(string)
		if !strings.Contains(detail, next.KeyID()) || !strings.Contains(detail, "can sign from") || !strings.Contains(detail, "emergency=true") {
			t.Errorf("detail %q does not say which key is ready when, nor how to rotate at once", detail)
		}
		if secs, err := strconv.Atoi(early.Header.Get("Retry-After")); err != nil || secs < 1 || secs > 3 {
			t.Errorf("Retry-After = %q, want the seconds until the next key is ready", early.Header.Get("Retry-After"))
		}
		if kid := decodeSegment(t, createToken(t, bobC, map[string]any{"name": "still old", "kind": "personal"})["token"].(string), 0)["kid"]; kid != oldKID {
			t.Errorf("after a refused rotation tokens are signed by %v, want still %s", kid, oldKID)
		}
		expectProblem(t, bobC.do("POST", "/api/keys/rotate", nil), http.StatusForbidden, "forbidden")
	})

	rot := rotateSigningKeys(t, admin)
	if rot["kid"] != next.KeyID() || rot["next_kid"] == "" || rot["next_kid"] == next.KeyID() || rot["emergency"] != false ||
		fmt.Sprint(rot["retired"]) != "["+oldKID+"]" {
		t.Fatalf("rotation = %v, want the published next key %s to sign, %s retired and a new next key", rot, next.KeyID(), oldKID)
	}

	t.Run("a token signed right after the rotation verifies with the JWKS fetched before it", func(t *testing.T) {
		after := createToken(t, bobC, map[string]any{"name": "after", "kind": "personal"})["token"].(string)
		if kid := decodeSegment(t, after, 0)["kid"]; kid != next.KeyID() {
			t.Fatalf("token signed after the rotation has kid %v, want %s", kid, next.KeyID())
		}
		if why := verifiesWith(cached, after, in.URL, "gatehouse"); why != "" {
			t.Fatalf("the new token does not verify with the keys fetched before the rotation: %s", why)
		}
		if r := bearer(t, in, "GET", "/anything", after, nil); r.StatusCode != http.StatusOK {
			t.Fatalf("new token: %d %s", r.StatusCode, r.body)
		}
		up, _ := in.backend.lastRequest()
		assertion := up.Header.Get("X-Gatehouse-Assertion")
		if kid := decodeSegment(t, assertion, 0)["kid"]; kid != next.KeyID() {
			t.Fatalf("assertion signed after the rotation has kid %v, want %s", kid, next.KeyID())
		}
		if why := verifiesWith(cached, assertion, in.URL, in.URL); why != "" {
			t.Fatalf("the assertion does not verify with the keys fetched before the rotation: %s", why)
		}
	})
	t.Run("tokens of the retired key keep working and its key stays published", func(t *testing.T) {
		if r := bearer(t, in, "GET", "/anything", before, nil); r.StatusCode != http.StatusOK {
			t.Fatalf("old token after the rotation: %d %s", r.StatusCode, r.body)
		}
		if got, want := jwksKIDs(t, in), []string{next.KeyID(), rot["next_kid"].(string), oldKID}; !slices.Equal(got, want) {
			t.Fatalf("JWKS kids after the rotation = %v, want current, next, retired %v", got, want)
		}
	})
	t.Run("the rotation is audited", func(t *testing.T) {
		events := admin.get("/api/audit?type=keys.rotated").json(t)["events"].([]any)
		if len(events) != 1 {
			t.Fatalf("keys.rotated events = %v, want one", events)
		}
		ev := events[0].(map[string]any)
		detail := ev["detail"].(map[string]any)
		if ev["actor_id"] != admin.userID() || detail["kid"] != next.KeyID() || detail["next_kid"] != rot["next_kid"] {
			t.Fatalf("keys.rotated = %v, want alice promoting %s", ev, next.KeyID())
		}
	})
	t.Run("the keys survive a restart", func(t *testing.T) {
		kids := jwksKIDs(t, in)
		in.restart()
		if got := jwksKIDs(t, in); !slices.Equal(got, kids) {
			t.Fatalf("JWKS kids after restart = %v, want %v", got, kids)
		}
	})
}

// TestEmergencyKeyRotationRevokesTheOldKeysTokens: ?emergency=true signs with
// a fresh key at once, takes the old keys out of the JWKS and revokes every
// token the old key signed, audited.
func TestEmergencyKeyRotationRevokesTheOldKeysTokens(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	admin := in.newClient()
	admin.signIn(alice, "")
	bobC := activeClient(t, in, bob)
	personal := createToken(t, bobC, map[string]any{"name": "laptop", "kind": "personal"})
	system := createToken(t, admin, map[string]any{"name": "ci", "kind": "system"})
	oldKID := decodeSegment(t, personal["token"].(string), 0)["kid"].(string)
	oldKeys := jwksKIDs(t, in)
	for _, tok := range []map[string]any{personal, system} {
		// Verified once, so the verification is cached.
		if r := bearer(t, in, "GET", "/anything", tok["token"].(string), nil); r.StatusCode != http.StatusOK {
			t.Fatalf("token %s before the rotation: %d %s", tok["name"], r.StatusCode, r.body)
		}
	}

	expectProblem(t, admin.do("POST", "/api/keys/rotate?emergency=maybe", nil), http.StatusBadRequest, "validation_failed")
	expectProblem(t, bobC.do("POST", "/api/keys/rotate?emergency=true", nil), http.StatusForbidden, "forbidden")
	rot := admin.do("POST", "/api/keys/rotate?emergency=true", nil)
	if rot.StatusCode != http.StatusOK {
		t.Fatalf("emergency rotation: %d %s", rot.StatusCode, rot.body)
	}
	body := rot.json(t)
	newKID, _ := body["kid"].(string)
	if body["emergency"] != true || body["revoked_tokens"] != 2.0 || slices.Contains(oldKeys, newKID) || !strings.Contains(fmt.Sprint(body["withdrawn"]), oldKID) {
		t.Fatalf("emergency rotation = %v, want a fresh key, %s withdrawn and 2 tokens revoked", body, oldKID)
	}

	t.Run("the old key's tokens are refused", func(t *testing.T) {
		for _, tok := range []map[string]any{personal, system} {
			expectProblem(t, bearer(t, in, "GET", "/anything", tok["token"].(string), nil), http.StatusUnauthorized, "invalid_token")
		}
		list := bobC.get("/api/tokens").json(t)["tokens"].([]any)
		if len(list) != 1 || list[0].(map[string]any)["revoked_at"] == nil {
			t.Fatalf("bob's tokens = %v, want laptop revoked", list)
		}
	})
	t.Run("the old keys leave the JWKS and a fresh key signs at once", func(t *testing.T) {
		kids := jwksKIDs(t, in)
		for _, old := range oldKeys {
			if slices.Contains(kids, old) {
				t.Fatalf("JWKS %v still publishes the replaced key %s", kids, old)
			}
		}
		if len(kids) != 2 || kids[0] != newKID || kids[1] != body["next_kid"] {
			t.Fatalf("JWKS kids = %v, want the fresh key %s and the next key %v", kids, newKID, body["next_kid"])
		}
		fresh := createToken(t, bobC, map[string]any{"name": "new laptop", "kind": "personal"})["token"].(string)
		if kid := decodeSegment(t, fresh, 0)["kid"]; kid != newKID {
			t.Fatalf("token signed after the emergency rotation has kid %v, want %s", kid, newKID)
		}
		if r := bearer(t, in, "GET", "/anything", fresh, nil); r.StatusCode != http.StatusOK {
			t.Fatalf("a token of the fresh key: %d %s", r.StatusCode, r.body)
		}
	})
	t.Run("the rotation and each revocation are audited", func(t *testing.T) {
		events := admin.get("/api/audit?type=keys.rotated").json(t)["events"].([]any)
		if len(events) != 1 {
			t.Fatalf("keys.rotated events = %v, want one", events)
		}
		ev := events[0].(map[string]any)
		detail := ev["detail"].(map[string]any)
		if ev["actor_id"] != admin.userID() || detail["emergency"] != true || detail["kid"] != newKID || detail["revoked_tokens"] != 2.0 {
			t.Fatalf("keys.rotated = %v, want alice's emergency rotation to %s revoking 2 tokens", ev, newKID)
		}
		revoked := map[string]bool{}
		for _, e := range admin.get("/api/audit?type=token.revoked").json(t)["events"].([]any) {
			e := e.(map[string]any)
			d := e["detail"].(map[string]any)
			if d["reason"] == "key_withdrawn" && e["actor_id"] == admin.userID() {
				revoked[d["token_id"].(string)] = true
			}
		}
		if !revoked[personal["id"].(string)] || !revoked[system["id"].(string)] || len(revoked) != 2 {
			t.Fatalf("token.revoked for key_withdrawn: %v, want both tokens", revoked)
		}
	})
}

// TestKeyRotationHoldsAcrossInstances: the store is the truth. The next key
// is published everywhere before it signs, so a token signed on A right after
// a rotation verifies on B at once; B signs with the promoted key within a
// second; and an emergency rotation on A is enforced on B within a second.
func TestKeyRotationHoldsAcrossInstances(t *testing.T) {
	cfg := instanceConfig{
		storeLine:   "store postgres " + postgresSchema(t),
		extraGlobal: "\t\tsecret this-is-a-shared-test-secret-of-40-chars\n" + quickPrepublish,
	}
	a := startInstance(t, cfg)
	cfg.publicURL = a.URL
	b := startInstance(t, cfg)
	adminA := a.newClient()
	adminA.signIn(alice, "")
	bobA := activeClient(t, a, bob)
	waitFor(t, 2*time.Second, "both instances to publish the same keys", func() string {
		if ka, kb := jwksKIDs(t, a), jwksKIDs(t, b); !slices.Equal(ka, kb) {
			return fmt.Sprint(ka, " on A, ", kb, " on B")
		}
		return ""
	})

	rot := rotateSigningKeys(t, adminA)
	after := createToken(t, bobA, map[string]any{"name": "after", "kind": "personal"})["token"].(string)
	if r := bearer(t, b, "GET", "/anything", after, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("a token signed on A right after the rotation, on B at once: %d %s", r.StatusCode, r.body)
	}
	waitFor(t, time.Second+200*time.Millisecond, "B signing with the promoted key", func() string {
		if r := bearer(t, b, "GET", "/anything", after, nil); r.StatusCode != http.StatusOK {
			return fmt.Sprint("status ", r.StatusCode)
		}
		up, _ := b.backend.lastRequest()
		if kid := decodeSegment(t, up.Header.Get("X-Gatehouse-Assertion"), 0)["kid"]; kid != rot["kid"] {
			return fmt.Sprint("B's assertion has kid ", kid)
		}
		if kids := jwksKIDs(t, b); len(kids) < 2 || kids[1] != rot["next_kid"] {
			return fmt.Sprint("B publishes ", kids)
		}
		return ""
	})

	emergency := adminA.do("POST", "/api/keys/rotate?emergency=true", nil)
	if emergency.StatusCode != http.StatusOK {
		t.Fatalf("emergency rotation: %d %s", emergency.StatusCode, emergency.body)
	}
	took := waitFor(t, time.Second+200*time.Millisecond, "the emergency rotation on B", func() string {
		if r := bearer(t, b, "GET", "/anything", after, nil); r.StatusCode != http.StatusUnauthorized {
			return fmt.Sprint("the replaced key's token: status ", r.StatusCode)
		}
		if kids := jwksKIDs(t, b); slices.Contains(kids, rot["kid"].(string)) {
			return fmt.Sprint("B still publishes the replaced key: ", kids)
		}
		return ""
	})
	t.Logf("the emergency rotation reached B after %s", took)
}

// TestDiscoveryDocumentLeadsToTheKeys: backends find the issuer's keys from
// /.well-known/openid-configuration.
func TestDiscoveryDocumentLeadsToTheKeys(t *testing.T) {
	in := startInstance(t, instanceConfig{})
	resp := in.newClient().get("/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("discovery: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), resp.body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=300" {
		t.Fatalf("discovery Cache-Control = %q, want the JWKS's (key_prepublish 10m: max-age 300)", cc)
	}
	doc := resp.json(t)
	if doc["issuer"] != in.URL || doc["jwks_uri"] != in.URL+"/.well-known/jwks.json" || fmt.Sprint(doc["id_token_signing_alg_values_supported"]) != "[ES256]" {
		t.Fatalf("discovery = %v, want issuer %s (public_url), its jwks_uri and ES256", doc, in.URL)
	}

	// What the backend receives verifies with the keys the document points to.
	bobC := activeClient(t, in, bob)
	tok := createToken(t, bobC, map[string]any{"name": "laptop", "kind": "personal"})["token"].(string)
	if r := bearer(t, in, "GET", "/anything", tok, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("bearer request: %d %s", r.StatusCode, r.body)
	}
	up, _ := in.backend.lastRequest()
	jwks := in.newClient().get(strings.TrimPrefix(doc["jwks_uri"].(string), in.URL))
	set, err := jwk.Parse(jwks.body)
	if err != nil {
		t.Fatal(err)
	}
	if why := verifiesWith(set, up.Header.Get("X-Gatehouse-Assertion"), doc["issuer"].(string), in.URL); why != "" {
		t.Fatalf("the assertion does not verify as the discovered issuer's: %s", why)
	}
	if why := verifiesWith(set, tok, doc["issuer"].(string), "gatehouse"); why != "" {
		t.Fatalf("the API token does not verify as the discovered issuer's: %s", why)
	}
}
