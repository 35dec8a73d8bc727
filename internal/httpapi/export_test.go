package httpapi

// ClientFrame lets the external tests (wspoll_test.go) build masked client
// frames with the helper of wsframe_test.go.
var ClientFrame = clientFrame
