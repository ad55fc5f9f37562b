package dispatcher

import (
	"strings"

	"github.com/esmd/esmd/esm"
)

// SplitFunction splits a FunctionArn into the function (unqualified ARN)
// and its qualifier (version, alias or $LATEST; "" when unqualified).
// Names and partial ARNs are split the same way: "my-fn:PROD" gives
// ("my-fn", "PROD").
func SplitFunction(fn string) (name, qualifier string) {
	if strings.HasPrefix(fn, "arn:") {
		// Resource: function:name[:qualifier]
		a, ok := esm.ParseARN(fn)
		if res := strings.SplitN(a.Resource, ":", 3); ok && len(res) == 3 {
			return fn[:len(fn)-len(res[2])-1], res[2]
		}
		return fn, ""
	}
	// account:function:name[:qualifier], name[:qualifier]
	parts := strings.Split(fn, ":")
	switch {
	case len(parts) == 4 && parts[1] == "function":
		return strings.Join(parts[:3], ":"), parts[3]
	case len(parts) == 2 && parts[0] != "" && parts[1] != "function":
		return parts[0], parts[1]
	}
	return fn, ""
}

// bareName is the name of an unqualified function ARN or partial ARN
// (account:function:name), and name itself otherwise.
func bareName(fn string) string {
	if i := strings.LastIndex(fn, ":function:"); i >= 0 {
		return fn[i+len(":function:"):]
	}
	return fn
}
