package httpsig

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var sfvCmp = cmp.Options{
	cmp.AllowUnexported(member{}, item{}, param{}, bareItem{}),
	cmpopts.EquateEmpty(),
}

func integer(i int64) bareItem { return bareItem{kind: kindInteger, i: i} }
func str(s string) bareItem    { return bareItem{kind: kindString, s: s} }
func boolean(t bool) bareItem  { return bareItem{kind: kindBoolean, t: t} }

func TestParseDictionary(t *testing.T) {
	tests := []struct {
		in   string
		want []member
		// canon is the serialised form; in when empty.
		canon string
	}{
		{in: "", want: nil},
		{in: `a=1, b="x", c=tok/en:1, d=:AQID:, e=?0, f`, want: []member{
			{key: "a", val: integer(1)},
			{key: "b", val: str("x")},
			{key: "c", val: bareItem{kind: kindToken, s: "tok/en:1"}},
			{key: "d", val: bareItem{kind: kindBytes, b: []byte{1, 2, 3}}},
			{key: "e", val: boolean(false)},
			{key: "f", val: boolean(true)},
		}},
		{in: `  a=1 ,	b=-999999999999999  `, canon: `a=1, b=-999999999999999`, want: []member{
			{key: "a", val: integer(1)},
			{key: "b", val: integer(-999999999999999)},
		}},
		{in: `sig=( "@method"  "x";p );created=1;k="v";flag;f=?0`, canon: `sig=("@method" "x";p);created=1;k="v";flag;f=?0`, want: []member{{
			key: "sig", isList: true,
			list: []item{{val: str("@method")}, {val: str("x"), params: []param{{key: "p", val: boolean(true)}}}},
			params: []param{
				{key: "created", val: integer(1)},
				{key: "k", val: str("v")},
				{key: "flag", val: boolean(true)},
				{key: "f", val: boolean(false)},
			},
		}}},
		{in: `*a.b-c_d=(), e=:: `, canon: `*a.b-c_d=(), e=::`, want: []member{
			{key: "*a.b-c_d", isList: true},
			{key: "e", val: bareItem{kind: kindBytes, b: []byte{}}},
		}},
		{in: `a="q\"b\\s"`, want: []member{{key: "a", val: str(`q"b\s`)}}},
		{in: `a;p=?1`, canon: `a;p`, want: []member{{key: "a", val: boolean(true), params: []param{{key: "p", val: boolean(true)}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseDictionary(tt.in)
			if err != nil {
				t.Fatalf("parseDictionary(%q) = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got, sfvCmp); diff != "" {
				t.Errorf("parseDictionary(%q) (-want +got):\n%s", tt.in, diff)
			}
			canon := tt.canon
			if canon == "" {
				canon = tt.in
			}
			if s, err := serializeDictionary(got); err != nil || s != canon {
				t.Errorf("serializeDictionary = %q, %v, want %q", s, err, canon)
			}
		})
	}
}

func TestParseDictionaryRefuses(t *testing.T) {
	for _, in := range []string{
		"A=1",                  // uppercase key
		"1a=1",                 // key starts with a digit
		"a=1,a=2",              // repeated key
		"a;x;x",                // repeated parameter
		"a=(1);x=1;x=2",        // repeated list parameter
		"a=1.5",                // decimal
		"a=1234567890123456",   // 16 digits
		"a=-",                  // sign alone
		`a="\x"`,               // bad escape
		`a="é"`,                // not ASCII
		"a=\"tab\there\"",      // control character
		`a="open`,              // unclosed string
		"a=:AQI:",              // unpadded
		"a=:AQJ=:",             // non-canonical padding bits
		"a=:AQID",              // unclosed byte sequence
		"a=:A-_=:",             // base64url, not base64
		"a=(1 2",               // unclosed inner list
		"a=(1,2)",              // comma in inner list
		"a=(1)(2)",             // two lists
		"a=((1))",              // nested list
		"a=1,",                 // trailing comma
		",a=1",                 // leading comma
		"a=1 b=2",              // missing comma
		"a=?2",                 // bad boolean
		"a==1",                 // double equals
		"a=1;",                 // parameter without key
		"a=1;P=2",              // uppercase parameter key
		"a=tok\x80",            // byte after token
		"a=@x",                 // no item starts with @
		"a=1\x00",              // NUL
		"\ta=1",                // leading tab (only SP may lead)
		"a=\"x\"\n",            // newline
		"a=(\"x\" ;p=1)",       // space before parameter
		"a=1;p= 2",             // space after =
		"a=:AQID:;p=\"\\\"",    // parameter string unclosed
		"a=(\"@method\"\"x\")", // items not separated
	} {
		if got, err := parseDictionary(in); err == nil {
			t.Errorf("parseDictionary(%q) = %v, want an error", in, got)
		}
	}
}
