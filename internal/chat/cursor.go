package chat

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Cursors are opaque to clients: base64url of a tagged, colon-separated
// tuple. The tag stops a cursor of one list from being used on another.

func encodeCursor(parts ...string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(parts, ":")))
}

func decodeCursor(field, cursor, tag string, n int) ([]string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || !storable(string(raw)) {
		return nil, invalidf(field, "%s is not a valid cursor", field)
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != n+1 || parts[0] != tag {
		return nil, invalidf(field, "%s is not a valid cursor", field)
	}
	return parts[1:], nil
}

func parseSeq(field, s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, invalidf(field, "%s is not a valid cursor", field)
	}
	return n, nil
}

// MessageCursor is the cursor of a message edge: its creation sequence.
func MessageCursor(seq int64) string { return encodeCursor("m", strconv.FormatInt(seq, 10)) }

func decodeMessageCursor(field, c string) (int64, error) {
	p, err := decodeCursor(field, c, "m", 1)
	if err != nil {
		return 0, err
	}
	return parseSeq(field, p[0])
}

// EventCursor is the cursor of a message event: its conversation and sequence.
func EventCursor(conversationID string, seq int64) string {
	return encodeCursor("e", conversationID, strconv.FormatInt(seq, 10))
}

func decodeEventCursor(field, conversationID, c string) (int64, error) {
	p, err := decodeCursor(field, c, "e", 2)
	if err != nil {
		return 0, err
	}
	if p[0] != conversationID {
		return 0, invalidf(field, "%s belongs to another conversation", field)
	}
	return parseSeq(field, p[1])
}

// ConversationCursor is the cursor of a conversation edge: its place in the
// (updated_at, id) order.
func ConversationCursor(updatedAt time.Time, id string) string {
	return encodeCursor("c", strconv.FormatInt(updatedAt.UnixNano(), 10), id)
}

func decodeConversationCursor(field, c string) (time.Time, string, error) {
	p, err := decodeCursor(field, c, "c", 2)
	if err != nil {
		return time.Time{}, "", err
	}
	ns, err := strconv.ParseInt(p[0], 10, 64)
	if err != nil || p[1] == "" {
		return time.Time{}, "", invalidf(field, "%s is not a valid cursor", field)
	}
	return time.Unix(0, ns).UTC(), p[1], nil
}
