package httpapi

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// originPolicy is ALLOWED_ORIGINS, for CORS and for WebSocket upgrades
// alike. Empty means same origin only: a browser page on another origin
// gets no CORS headers and its WebSocket upgrade is refused (403), while
// clients that send no Origin (not browsers) are always served.
type originPolicy struct {
	any bool // "*"
	// patterns are matched as coder/websocket's AcceptOptions.OriginPatterns
	// are: with path.Match, case-insensitively, against the origin's host
	// ("app.example.com", "*.example.com", "localhost:*"), or against
	// "scheme://host" when the pattern has a scheme ("https://app.example.com").
	patterns []string
}

func newOriginPolicy(origins []string) originPolicy {
	var o originPolicy
	for _, p := range origins {
		p = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(p)), "/")
		switch p {
		case "":
		case "*":
			o.any = true
		default:
			o.patterns = append(o.patterns, p)
		}
	}
	return o
}

// allowed reports whether a request may be served given its Origin: none,
// the request's own host, or an allowed cross origin.
func (o originPolicy) allowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || o.any {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" (sandboxed frames, file://) unless "*"
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, p := range o.patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(p, strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

const (
	corsMethods = "GET, POST, OPTIONS"
	corsHeaders = "Authorization, Content-Type, Accept, X-Request-Id, Apollo-Require-Preflight, X-Apollo-Operation-Name"
	corsExpose  = "X-Request-Id, Content-Disposition, Content-Length"
	corsMaxAge  = "7200" // Chromium's cap; preflights are cached that long
)

// cors answers preflights and adds CORS headers on /graphql and
// /attachments/ for allowed origins. No credentials: tokens are bearer
// tokens, never cookies. WebSocket upgrades are checked by the transport.
func (o originPolicy) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.URL.Path != "/graphql" && !strings.HasPrefix(r.URL.Path, "/attachments/")) || r.Header.Get("Upgrade") != "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		ok := origin != "" && o.allowed(r)
		allowOrigin := origin
		if o.any {
			allowOrigin = "*"
		}
		if r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if !ok {
				http.Error(w, "origin not allowed (see ALLOWED_ORIGINS)", http.StatusForbidden)
				return
			}
			h.Set("Access-Control-Allow-Origin", allowOrigin)
			h.Set("Access-Control-Allow-Methods", corsMethods)
			h.Set("Access-Control-Allow-Headers", corsHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if ok {
			h.Set("Access-Control-Allow-Origin", allowOrigin)
			h.Set("Access-Control-Expose-Headers", corsExpose)
		}
		next.ServeHTTP(w, r)
	})
}
