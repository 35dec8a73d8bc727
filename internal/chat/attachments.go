package chat

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/parley-chat/parley/ent"
	"github.com/parley-chat/parley/ent/attachment"
	"github.com/parley-chat/parley/ent/conversation"
	"github.com/parley-chat/parley/ent/participant"
)

// FileStore keeps attachment bytes in a directory, one file per attachment
// named by its ID (IDs contain no path separators).
type FileStore struct{ dir string }

// NewFileStore creates dir if needed.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("attachment dir: %w", err)
	}
	return &FileStore{dir: dir}, nil
}

func (f *FileStore) path(id string) string { return filepath.Join(f.dir, filepath.Base(id)) }

// Upload is a file being uploaded.
type Upload struct {
	Filename    string
	ContentType string
	Size        int64 // as declared by the request; the bytes read are what counts
	Content     io.Reader
}

// UploadAttachment stores a file for a conversation of the viewer. The file
// is written completely before its row exists, and removed if the row cannot
// be written, so no half-uploaded attachment is ever visible.
func (s *Service) UploadAttachment(ctx context.Context, viewer, conversationID string, up Upload) (*ent.Attachment, error) {
	if err := requireMember(ctx, s.db.Participant, viewer, conversationID); err != nil {
		return nil, err
	}
	if up.Size > s.limits.MaxUploadBytes {
		return nil, invalidf("file", "file is larger than %d bytes", s.limits.MaxUploadBytes)
	}
	name := cleanFilename(up.Filename)
	id := attachment.DefaultID()
	tmp, err := os.CreateTemp(s.files.dir, ".upload-*")
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = os.Remove(tmp.Name())
		}
	}()
	br := bufio.NewReader(io.LimitReader(up.Content, s.limits.MaxUploadBytes+1))
	head, _ := br.Peek(512)
	contentType := up.ContentType
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt == "application/octet-stream" || contentType == "" || !storable(contentType) {
		contentType = http.DetectContentType(head)
	}
	n, err := io.Copy(tmp, br)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	if n > s.limits.MaxUploadBytes {
		return nil, invalidf("file", "file is larger than %d bytes", s.limits.MaxUploadBytes)
	}
	if err := os.Rename(tmp.Name(), s.files.path(id)); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	a, err := s.db.Attachment.Create().SetID(id).SetConversationID(conversationID).SetUploaderID(viewer).
		SetFilename(name).SetContentType(contentType).SetSize(n).SetCreatedAt(now()).Save(ctx)
	if err != nil {
		_ = os.Remove(s.files.path(id))
		return nil, fmt.Errorf("upload: %w", err)
	}
	committed = true
	return a, nil
}

func cleanFilename(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, name)
	if name == "." || name == "/" || name == "" {
		name = "file"
	}
	for utf8.RuneCountInString(name) > 255 || len(name) > 255 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	return name
}

// Attachment returns an attachment of one of the viewer's conversations, or
// NOT_FOUND. Attachments of deleted messages are gone.
func (s *Service) Attachment(ctx context.Context, viewer, id string) (*ent.Attachment, error) {
	if !storable(id) {
		return nil, notFound("attachment")
	}
	a, err := s.db.Attachment.Query().
		Where(attachment.ID(id), attachment.HasConversationWith(conversation.HasParticipantsWith(participant.UserID(viewer)))).
		WithMessage().Only(ctx)
	if ent.IsNotFound(err) {
		return nil, notFound("attachment")
	}
	if err != nil {
		return nil, fmt.Errorf("attachment: %w", err)
	}
	if m := a.Edges.Message; m != nil && m.DeletedAt != nil {
		return nil, notFound("attachment")
	}
	return a, nil
}

// OpenAttachment returns an attachment's row and bytes for a participant.
func (s *Service) OpenAttachment(ctx context.Context, viewer, id string) (*ent.Attachment, *os.File, error) {
	a, err := s.Attachment(ctx, viewer, id)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(s.files.path(a.ID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, notFound("attachment")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open attachment: %w", err)
	}
	return a, f, nil
}
