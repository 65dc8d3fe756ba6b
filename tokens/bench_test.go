package tokens_test

import (
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/gatehouse/gatehouse/tokens"
)

// benchToken mints a token of typical size (about 600 bytes with ES256) valid
// now by the real clock, and a verifier reading the real clock.
func benchToken(b *testing.B, alg string) (*fixture, *tokens.Verifier, string) {
	f := newFixture(b, alg)
	f.clock.Set(time.Now())
	c := f.claims()
	c.Name, c.Models = "", nil
	token := f.mint(b, c)
	return f, tokens.NewVerifier(f.ring, tokens.VerifierConfig{Issuer: testIssuer}), token
}

func BenchmarkVerifyFirstSight(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		b.Run(alg, func(b *testing.B) {
			_, v, token := benchToken(b, alg)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				v.Purge()
				b.StartTimer()
				if _, err := v.Verify(token); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(token)), "token-bytes")
		})
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	_, v, token := benchToken(b, "ES256")
	if _, err := v.Verify(token); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(token); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(token)), "token-bytes")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.Verify(token); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkJWSVerify is the bare library call, the floor of a first sight.
func BenchmarkJWSVerify(b *testing.B) {
	f, _, token := benchToken(b, "ES256")
	key, _, _ := f.ring.PublicKey(f.ring.CurrentKID())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jws.Verify([]byte(token), jws.WithKey(jwa.ES256, key)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseBearer(b *testing.B) {
	_, _, token := benchToken(b, "ES256")
	header := "Bearer " + token
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tokens.ParseBearer(header); !ok {
			b.Fatal("not a bearer header")
		}
	}
}
