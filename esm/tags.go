package esm

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// Tag limits. The Lambda model declares Tags as a plain string map; the
// service enforces these (Lambda tagging guide; the Lambda MicroVMs
// TagResource reference prints the same key and value constraints, and a
// real Lambda TagResource refusal of a value prints patTag).
const (
	// MaxTags is the most tags one resource may carry.
	MaxTags           = 50
	maxTagKeyLength   = 128
	maxTagValueLength = 256
	// patTag is the key and value pattern, as AWS prints it.
	patTag = `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`
	// reservedTagPrefix starts the keys AWS keeps for itself (any case).
	reservedTagPrefix = "aws:"
)

var reTag = fullMatch(patTag)

// tags checks a Tags map's shape as the front end does. A key or a value
// outside its constraints fails the whole map, printed as Java prints a map
// ({k=v, k2=v2}); the constraint lists every constraint of the member, not
// only the one broken. This is AWS's wording for values (recorded from a
// Lambda TagResource refusal), and the same form for keys.
func (c *checker) tags(tags map[string]string, path string) {
	if tags == nil {
		return
	}
	badKey, badValue := false, false
	for k, v := range tags {
		if n := utf8.RuneCountInString(k); n < 1 || n > maxTagKeyLength || !reTag.MatchString(k) {
			badKey = true
		}
		if utf8.RuneCountInString(v) > maxTagValueLength || !reTag.MatchString(v) {
			badValue = true
		}
	}
	if badKey {
		c.v.add(quoteMap(tags), path, "Map keys must satisfy constraint: [Member must have length less than or equal to 128, "+
			"Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: "+patTag+"]")
	}
	if badValue {
		c.v.add(quoteMap(tags), path, "Map value must satisfy constraint: [Member must have length less than or equal to 256, "+
			"Member must have length greater than or equal to 0, Member must satisfy regular expression pattern: "+patTag+"]")
	}
}

// quoteMap prints a map as the AWS front end does, in key order so that the
// message does not change from one call to the next.
func quoteMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("'{")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(m[k])
	}
	b.WriteString("}'")
	return b.String()
}

// checkTagRules applies the service's tag rules to the tags a resource would
// carry (its own and the new ones): no reserved aws: key, at most MaxTags.
func checkTagRules(tags map[string]string) *Error {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if strings.HasPrefix(strings.ToLower(k), reservedTagPrefix) {
			return invalidParam("Invalid tag key %s: the aws: prefix is reserved for AWS use.", k)
		}
	}
	if len(tags) > MaxTags {
		return invalidParam("Number of tags exceeds resource tag limit.")
	}
	return nil
}
