package openapitest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// CheckRefs checks the document raw: every $ref points at a component that
// exists (#/components/KIND/NAME), and every schema, parameter and response
// component is used.
func CheckRefs(t testing.TB, raw []byte) {
	t.Helper()
	var root any
	if err := json.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"]; ok {
				s, _ := ref.(string)
				if err := resolve(root, s); err != nil {
					t.Errorf("%s: $ref %q: %v", where, s, err)
				}
				used[s] = true
			}
			for k, x := range v {
				walk(where+"/"+k, x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s/%d", where, i), x)
			}
		}
	}
	walk("#", root)
	rootMap, _ := root.(map[string]any)
	components, _ := rootMap["components"].(map[string]any)
	escape := strings.NewReplacer("~", "~0", "/", "~1")
	for _, kind := range []string{"schemas", "parameters", "responses"} {
		m, _ := components[kind].(map[string]any)
		for name := range m {
			if ref := "#/components/" + kind + "/" + escape.Replace(name); !used[ref] {
				t.Errorf("%s is never used", ref)
			}
		}
	}
}

// resolve checks that ref names a component: #/components/KIND/NAME, each
// part escaped as a JSON pointer's.
func resolve(root any, ref string) error {
	rest, ok := strings.CutPrefix(ref, "#/components/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 2 {
		return fmt.Errorf("want #/components/KIND/NAME")
	}
	rootMap, _ := root.(map[string]any)
	v := rootMap["components"]
	for _, p := range parts {
		p = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok || m[p] == nil {
			return fmt.Errorf("no %s", p)
		}
		v = m[p]
	}
	return nil
}
