package ticket

import (
	"crypto/ed25519"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plab/plab/cred"
)

// fuzzWorld has fixed keys so the checked-in corpus holds documents that
// verify (testdata/fuzz).
func fuzzWorld(t testing.TB) (*Trust, *cred.PrivateKey, *cred.PrivateKey, time.Time) {
	key := func(b byte) *cred.PrivateKey {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = b
		k, err := cred.NewPrivateKey(ed25519.NewKeyFromSeed(seed))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	plc, node := key(1), key(2)
	trust, err := NewTrust(Issuer{Role: RolePLC, Name: "plc.test", Key: plc.Public()}, Issuer{Role: RoleNode, Name: "node1.test", Key: node.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return trust, plc, node, time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
}

// checkSigned re-checks a document Verify accepted, independently of
// go-jose: Ed25519 over the first two parts with the key its kid names.
func checkSigned(t *testing.T, doc string, trust *Trust) {
	parts := strings.Split(doc, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	p, err := split(doc, typeOf(doc))
	if err != nil {
		t.Fatalf("accepted document does not split: %v", err)
	}
	iss, ok := trust.lookup(cred.Fingerprint(p.header.Kid))
	if !ok || !iss.Key.Verify([]byte(parts[0]+"."+parts[1]), sig) {
		t.Fatalf("accepted document whose signature does not verify")
	}
}

func typeOf(doc string) string {
	if _, _, err := UnverifiedLease(doc); err == nil {
		return TypeLease
	}
	return TypeTicket
}

func FuzzVerifyTicket(f *testing.F) {
	trust, plc, _, now := fuzzWorld(f)
	doc, err := Sign(Ticket{ID: "seed", Principal: plc.Fingerprint(), Node: "node1.test", Slice: "s_x", NotBefore: now.Unix(), NotAfter: now.Add(time.Hour).Unix()}, "plc.test", plc)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Fuzz(func(t *testing.T, doc string) {
		tk, err := Verify(doc, trust, Checks{Now: now, Skew: time.Minute})
		if err != nil {
			if tk != nil {
				t.Fatal("ticket returned with an error")
			}
			return
		}
		checkSigned(t, doc, trust)
		un, _, err := UnverifiedTicket(doc)
		if err != nil || un.ID != tk.ID {
			t.Fatalf("Verify accepted what UnverifiedTicket refuses: %v", err)
		}
	})
}

func FuzzVerifyLease(f *testing.F) {
	trust, plc, node, now := fuzzWorld(f)
	doc, _, err := NewLease(&Ticket{ID: "seed", Principal: plc.Fingerprint(), Slice: "s_x"}, "s_x", "node1.test", now, now.Add(time.Hour), node)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Fuzz(func(t *testing.T, doc string) {
		l, err := VerifyLease(doc, trust, Checks{Now: now, Skew: time.Minute})
		if err != nil {
			if l != nil {
				t.Fatal("lease returned with an error")
			}
			return
		}
		checkSigned(t, doc, trust)
	})
}

// FuzzTicketClaims signs arbitrary claims bytes with a trusted key, so the
// strict JSON decoding behind a good signature is what gets fuzzed.
func FuzzTicketClaims(f *testing.F) {
	trust, plc, _, now := fuzzWorld(f)
	f.Add([]byte(`{"jti":"a","iss":"plc.test","sub":"` + string(plc.Fingerprint()) + `","aud":"n","slice":"s_x","res":{"cpu_shares":1,"ports":["tcp/80"]},"iat":0,"nbf":0,"exp":1900000000}`))
	f.Add([]byte(`{"jti":"a","iss":"plc.test","sub":"` + string(plc.Fingerprint()) + `","aud":"n","slice":"s_x","res":{"ports":[]},"iat":0,"nbf":0,"exp":1900000000}`))
	f.Add([]byte(`{"jti":"a","jti":"b"}`))
	f.Add([]byte(`{"JTI":"a"}`))
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","kid":"` + string(plc.Fingerprint()) + `","typ":"` + TypeTicket + `"}`))
	f.Fuzz(func(t *testing.T, claims []byte) {
		in := header + "." + base64.RawURLEncoding.EncodeToString(claims)
		doc := in + "." + base64.RawURLEncoding.EncodeToString(plc.Sign([]byte(in)))
		tk, err := Verify(doc, trust, Checks{Now: now})
		if err != nil {
			return
		}
		// What was accepted re-encodes to claims that decode the same.
		again, err := Sign(*tk, tk.Issuer, plc)
		if err != nil {
			t.Fatalf("accepted ticket cannot be signed again: %v", err)
		}
		tk2, err := Verify(again, trust, Checks{Now: now})
		if err != nil || !reflect.DeepEqual(tk, tk2) {
			t.Fatalf("accepted claims %q do not survive a round trip: %v", claims, err)
		}
	})
}
