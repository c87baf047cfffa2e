package httpsig

// A strict parser and serialiser for RFC 8941 structured-field
// dictionaries, the form of Signature-Input, Signature and Content-Digest.
//
// It follows the parsing algorithms of RFC 8941 §4.2 with three deliberate
// refusals, so that no two parsers can read one header two ways: a repeated
// dictionary key or parameter key is an error (RFC 8941 keeps the last),
// decimals are refused (no field here uses them), and a byte sequence must
// be canonical padded base64.
//
// Errors say where parsing stopped and what was wanted; they never quote
// the input, which may be a credential.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

type kind int

const (
	kindInteger kind = iota + 1
	kindString
	kindToken
	kindBytes
	kindBoolean
)

// bareItem is an RFC 8941 bare item; kind says which field holds it.
type bareItem struct {
	kind kind
	i    int64
	s    string // string or token
	b    []byte
	t    bool
}

type param struct {
	key string
	val bareItem
}

type item struct {
	val    bareItem
	params []param
}

// member is one dictionary member: an inner list when isList, else an item.
// params belong to the inner list or to the item.
type member struct {
	key    string
	isList bool
	list   []item
	val    bareItem
	params []param
}

const maxInteger = 999_999_999_999_999

type sfParser struct {
	s string
	i int
}

func (p *sfParser) eof() bool { return p.i >= len(p.s) }

func (p *sfParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.i]
}

func (p *sfParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d: "+format, append([]any{p.i}, args...)...)
}

func (p *sfParser) skipSP() {
	for p.peek() == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for c := p.peek(); c == ' ' || c == '\t'; c = p.peek() {
		p.i++
	}
}

// parseDictionary parses a whole field value as a dictionary.
func parseDictionary(s string) ([]member, error) {
	p := &sfParser{s: s}
	p.skipSP()
	var ms []member
	for !p.eof() {
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if m.key == key {
				return nil, p.errorf("dictionary key repeated")
			}
		}
		m := member{key: key}
		if p.peek() == '=' {
			p.i++
			if p.peek() == '(' {
				m.isList = true
				if m.list, err = p.innerList(); err != nil {
					return nil, err
				}
			} else if m.val, err = p.bareItem(); err != nil {
				return nil, err
			}
		} else {
			m.val = bareItem{kind: kindBoolean, t: true}
		}
		if m.params, err = p.parameters(); err != nil {
			return nil, err
		}
		ms = append(ms, m)
		p.skipOWS()
		if p.eof() {
			break
		}
		if p.peek() != ',' {
			return nil, p.errorf("want ',' between dictionary members")
		}
		p.i++
		p.skipOWS()
		if p.eof() {
			return nil, p.errorf("dictionary ends with ','")
		}
	}
	return ms, nil
}

func (p *sfParser) innerList() ([]item, error) {
	p.i++ // '('
	var items []item
	for {
		p.skipSP()
		if p.eof() {
			return nil, p.errorf("inner list not closed with ')'")
		}
		if p.peek() == ')' {
			p.i++
			return items, nil
		}
		v, err := p.bareItem()
		if err != nil {
			return nil, err
		}
		params, err := p.parameters()
		if err != nil {
			return nil, err
		}
		items = append(items, item{val: v, params: params})
		if c := p.peek(); c != ' ' && c != ')' {
			return nil, p.errorf("want ' ' or ')' after an inner list item")
		}
	}
}

func (p *sfParser) parameters() ([]param, error) {
	var ps []param
	for p.peek() == ';' {
		p.i++
		p.skipSP()
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		for _, q := range ps {
			if q.key == key {
				return nil, p.errorf("parameter repeated")
			}
		}
		v := bareItem{kind: kindBoolean, t: true}
		if p.peek() == '=' {
			p.i++
			if v, err = p.bareItem(); err != nil {
				return nil, err
			}
		}
		ps = append(ps, param{key: key, val: v})
	}
	return ps, nil
}

func isLCAlpha(c byte) bool { return 'a' <= c && c <= 'z' }
func isAlpha(c byte) bool   { return isLCAlpha(c) || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool   { return '0' <= c && c <= '9' }

func isKeyChar(c byte) bool {
	return isLCAlpha(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*'
}

// isTChar reports whether c is an RFC 9110 tchar.
func isTChar(c byte) bool {
	return isAlpha(c) || isDigit(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (p *sfParser) key() (string, error) {
	if c := p.peek(); !isLCAlpha(c) && c != '*' {
		return "", p.errorf("want a key (lowercase letter or '*')")
	}
	start := p.i
	for !p.eof() && isKeyChar(p.peek()) {
		p.i++
	}
	return p.s[start:p.i], nil
}

func (p *sfParser) bareItem() (bareItem, error) {
	switch c := p.peek(); {
	case c == '-' || isDigit(c):
		return p.integer()
	case c == '"':
		return p.str()
	case c == ':':
		return p.bytes()
	case c == '?':
		return p.boolean()
	case isAlpha(c) || c == '*':
		return p.token(), nil
	}
	return bareItem{}, p.errorf("want an item (integer, string, token, byte sequence or boolean)")
}

func (p *sfParser) integer() (bareItem, error) {
	start := p.i
	if p.peek() == '-' {
		p.i++
	}
	digits := p.i
	for !p.eof() && isDigit(p.peek()) {
		p.i++
	}
	switch n := p.i - digits; {
	case n == 0:
		return bareItem{}, p.errorf("want a digit")
	case n > 15:
		return bareItem{}, p.errorf("integer of more than 15 digits")
	}
	if p.peek() == '.' {
		return bareItem{}, p.errorf("decimals are not accepted")
	}
	i, err := strconv.ParseInt(p.s[start:p.i], 10, 64)
	if err != nil {
		return bareItem{}, p.errorf("bad integer")
	}
	return bareItem{kind: kindInteger, i: i}, nil
}

func (p *sfParser) str() (bareItem, error) {
	p.i++ // '"'
	var b strings.Builder
	for !p.eof() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '"':
			return bareItem{kind: kindString, s: b.String()}, nil
		case c == '\\':
			if n := p.peek(); n != '"' && n != '\\' {
				return bareItem{}, p.errorf("bad escape in string")
			}
			b.WriteByte(p.s[p.i])
			p.i++
		case c < 0x20 || c > 0x7e:
			return bareItem{}, p.errorf("string holds a byte that is not printable ASCII")
		default:
			b.WriteByte(c)
		}
	}
	return bareItem{}, p.errorf("string not closed with '\"'")
}

func (p *sfParser) token() bareItem {
	start := p.i
	p.i++ // first char checked by bareItem
	for !p.eof() && (isTChar(p.peek()) || p.peek() == ':' || p.peek() == '/') {
		p.i++
	}
	return bareItem{kind: kindToken, s: p.s[start:p.i]}
}

func (p *sfParser) bytes() (bareItem, error) {
	p.i++ // ':'
	start := p.i
	for !p.eof() && p.peek() != ':' {
		if c := p.peek(); !isAlpha(c) && !isDigit(c) && c != '+' && c != '/' && c != '=' {
			return bareItem{}, p.errorf("byte sequence holds a character that is not base64")
		}
		p.i++
	}
	if p.eof() {
		return bareItem{}, p.errorf("byte sequence not closed with ':'")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(p.s[start:p.i])
	if err != nil {
		return bareItem{}, p.errorf("byte sequence is not padded canonical base64")
	}
	p.i++ // ':'
	return bareItem{kind: kindBytes, b: b}, nil
}

func (p *sfParser) boolean() (bareItem, error) {
	p.i++ // '?'
	switch p.peek() {
	case '0', '1':
		t := p.peek() == '1'
		p.i++
		return bareItem{kind: kindBoolean, t: t}, nil
	}
	return bareItem{}, p.errorf("want ?0 or ?1")
}

// Serialisation (RFC 8941 §4.1). Values made by the parser always
// serialise; the errors guard values built by hand.

var errSerialize = errors.New("value cannot be serialised as a structured field")

func writeBareItem(b *strings.Builder, v bareItem) error {
	switch v.kind {
	case kindInteger:
		if v.i < -maxInteger || v.i > maxInteger {
			return errSerialize
		}
		b.WriteString(strconv.FormatInt(v.i, 10))
	case kindString:
		b.WriteByte('"')
		for i := 0; i < len(v.s); i++ {
			c := v.s[i]
			if c < 0x20 || c > 0x7e {
				return errSerialize
			}
			if c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('"')
	case kindToken:
		if v.s == "" || !isAlpha(v.s[0]) && v.s[0] != '*' {
			return errSerialize
		}
		for i := 1; i < len(v.s); i++ {
			if c := v.s[i]; !isTChar(c) && c != ':' && c != '/' {
				return errSerialize
			}
		}
		b.WriteString(v.s)
	case kindBytes:
		b.WriteByte(':')
		b.WriteString(base64.StdEncoding.EncodeToString(v.b))
		b.WriteByte(':')
	case kindBoolean:
		if v.t {
			b.WriteString("?1")
		} else {
			b.WriteString("?0")
		}
	default:
		return errSerialize
	}
	return nil
}

func writeKey(b *strings.Builder, k string) error {
	if k == "" || !isLCAlpha(k[0]) && k[0] != '*' {
		return errSerialize
	}
	for i := 1; i < len(k); i++ {
		if !isKeyChar(k[i]) {
			return errSerialize
		}
	}
	b.WriteString(k)
	return nil
}

func writeParams(b *strings.Builder, ps []param) error {
	for _, p := range ps {
		b.WriteByte(';')
		if err := writeKey(b, p.key); err != nil {
			return err
		}
		if p.val.kind == kindBoolean && p.val.t {
			continue
		}
		b.WriteByte('=')
		if err := writeBareItem(b, p.val); err != nil {
			return err
		}
	}
	return nil
}

func writeInnerList(b *strings.Builder, items []item, ps []param) error {
	b.WriteByte('(')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(' ')
		}
		if err := writeBareItem(b, it.val); err != nil {
			return err
		}
		if err := writeParams(b, it.params); err != nil {
			return err
		}
	}
	b.WriteByte(')')
	return writeParams(b, ps)
}

// serializeDictionary writes ms as a dictionary field value.
func serializeDictionary(ms []member) (string, error) {
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteString(", ")
		}
		if err := writeKey(&b, m.key); err != nil {
			return "", err
		}
		switch {
		case m.isList:
			b.WriteByte('=')
			if err := writeInnerList(&b, m.list, m.params); err != nil {
				return "", err
			}
			continue
		case m.val.kind == kindBoolean && m.val.t:
		default:
			b.WriteByte('=')
			if err := writeBareItem(&b, m.val); err != nil {
				return "", err
			}
		}
		if err := writeParams(&b, m.params); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}
