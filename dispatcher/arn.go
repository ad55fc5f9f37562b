package dispatcher

import "strings"

// SplitFunction splits a FunctionArn into the function (unqualified ARN)
// and its qualifier (version, alias or $LATEST; "" when unqualified).
// Names and partial ARNs are split the same way: "my-fn:PROD" gives
// ("my-fn", "PROD").
func SplitFunction(fn string) (name, qualifier string) {
	// arn:partition:lambda:region:account:function:name[:qualifier]
	if strings.HasPrefix(fn, "arn:") {
		parts := strings.SplitN(fn, ":", 8)
		if len(parts) == 8 {
			return strings.Join(parts[:7], ":"), parts[7]
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
