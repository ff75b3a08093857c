package main

import "github.com/txoutbox/txoutbox/sidecar"

// builtinKinds binds the built-in handlers to the configuration file's
// "kind" names.
func builtinKinds() []sidecar.Kind {
	return nil
}
