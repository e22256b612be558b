package lifecycle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/genproto/googleapis/type/latlng"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DocumentEvent is one Firestore write as an Eventarc
// google.cloud.firestore.document.v1.* event reports it: the document before
// and after the write. Old is nil for a create, New is nil for a delete.
type DocumentEvent struct {
	Old, New *DocumentState
	// UpdateMask lists the field paths an update changed; Eventarc sets it
	// for updates only. A mask sent empty (the Firestore emulator's trigger
	// sends one with every event) is an empty slice, an absent one nil.
	UpdateMask []string
}

// DocumentState is a document as an event carries it. Fields holds the
// values the way the Firestore client's DocumentSnapshot.Data gives them
// (see firestoreValue), so the same rules can read events and snapshots.
type DocumentState struct {
	// Name is the full resource name,
	// projects/{p}/databases/{d}/documents/{collection}/{id}[/...].
	Name string
	// ID is the last segment of Name (for plaid_tokens, the item id).
	ID                     string
	Fields                 map[string]any
	CreateTime, UpdateTime time.Time
}

// MaxDocumentEventBytes bounds the event data DecodeDocumentEvent accepts.
// A Firestore document is at most 1 MiB and an event carries two of them;
// their protobuf or JSON form can be several times larger than their stored
// size, but never near 32 MiB, which is also Cloud Run's request limit.
const MaxDocumentEventBytes = 32 << 20

// maxValueDepth bounds how deeply maps and arrays may nest. Firestore stops
// at 20 levels; the slack tolerates a future raise without letting hostile
// input recurse without end.
const maxValueDepth = 64

// Eventarc's DocumentEventData (googleapis/google-cloudevents,
// proto/google/events/cloud/firestore/v1/data.proto). Its Document, Value,
// MapValue, ArrayValue and DocumentMask use the field numbers of
// google.firestore.v1, so firestorepb decodes them; only the outer message
// has no Go type outside google-cloudevents-go, which the module proxy does
// not serve.
const (
	eventValueField      protowire.Number = 1 // Document value
	eventOldValueField   protowire.Number = 2 // Document old_value
	eventUpdateMaskField protowire.Number = 3 // DocumentMask update_mask
)

var (
	// A Document nests a map entry and a Value per level of a map and a
	// Value per level of an array, plus a Timestamp or LatLng at the leaf.
	protoDecoding = proto.UnmarshalOptions{RecursionLimit: 3*maxValueDepth + 4}
	jsonDecoding  = protojson.UnmarshalOptions{DiscardUnknown: true, RecursionLimit: 3*maxValueDepth + 4}
)

// DecodeDocumentEvent decodes the data of an Eventarc Firestore document
// event. contentType is the event's datacontenttype: application/protobuf
// (Eventarc's default, assumed when empty) or application/json (the protojson
// form). The data is untrusted: anything malformed is an error of code
// CodeInvalid, never a panic. Unknown fields are skipped.
//
// The Firestore emulator's own trigger (its --functions_emulator flag) posts
// these bytes base64-encoded under the same content type; a local adapter
// decodes the base64 first.
func DecodeDocumentEvent(data []byte, contentType string) (*DocumentEvent, error) {
	ev, err := decodeDocumentEvent(data, contentType)
	if err != nil {
		return nil, WrapError(CodeInvalid, err, "malformed Firestore document event")
	}
	return ev, nil
}

func decodeDocumentEvent(data []byte, contentType string) (*DocumentEvent, error) {
	if len(data) > MaxDocumentEventBytes {
		return nil, fmt.Errorf("%d bytes, more than the %d allowed", len(data), MaxDocumentEventBytes)
	}
	mediaType := "application/protobuf"
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, fmt.Errorf("content type %q: %w", contentType, err)
		}
		mediaType = mt
	}

	var (
		newDoc, oldDoc *firestorepb.Document
		mask           *firestorepb.DocumentMask
		err            error
	)
	switch mediaType {
	case "application/protobuf", "application/x-protobuf":
		newDoc, oldDoc, mask, err = unmarshalEventProto(data)
	case "application/json":
		newDoc, oldDoc, mask, err = unmarshalEventJSON(data)
	default:
		return nil, fmt.Errorf("content type %q: want application/protobuf or application/json", contentType)
	}
	if err != nil {
		return nil, err
	}
	if newDoc == nil && oldDoc == nil {
		return nil, errors.New("neither value nor old_value is set")
	}

	ev := &DocumentEvent{}
	if ev.New, err = documentState(newDoc); err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	if ev.Old, err = documentState(oldDoc); err != nil {
		return nil, fmt.Errorf("old_value: %w", err)
	}
	if mask != nil {
		ev.UpdateMask = mask.GetFieldPaths()
		if ev.UpdateMask == nil {
			ev.UpdateMask = []string{}
		}
	}
	return ev, nil
}

// unmarshalEventProto reads the outer DocumentEventData by hand and the
// messages inside it with firestorepb's wire-compatible types.
func unmarshalEventProto(data []byte) (newDoc, oldDoc *firestorepb.Document, mask *firestorepb.DocumentMask, err error) {
	// A singular message field that occurs more than once is merged, as
	// protobuf requires; each occurrence must be a whole message by itself.
	var parts [eventUpdateMaskField + 1][][]byte
	for b := data; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, nil, fmt.Errorf("at byte %d: %w", len(data)-len(b), protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber {
			return nil, nil, nil, fmt.Errorf("at byte %d: field number %d out of range", len(data)-len(b), num)
		}
		offset := len(data) - len(b)
		b = b[n:]
		switch num {
		case eventValueField, eventOldValueField, eventUpdateMaskField:
			if typ != protowire.BytesType {
				return nil, nil, nil, fmt.Errorf("at byte %d: field %d has wire type %d, want %d (length-delimited)", offset, num, typ, protowire.BytesType)
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, nil, nil, fmt.Errorf("field %d at byte %d: %w", num, offset, protowire.ParseError(n))
			}
			parts[num] = append(parts[num], v)
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, nil, nil, fmt.Errorf("unknown field %d at byte %d: %w", num, offset, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}

	if parts[eventValueField] != nil {
		newDoc = &firestorepb.Document{}
		if err := unmarshalMerged(parts[eventValueField], newDoc); err != nil {
			return nil, nil, nil, fmt.Errorf("value: %w", err)
		}
	}
	if parts[eventOldValueField] != nil {
		oldDoc = &firestorepb.Document{}
		if err := unmarshalMerged(parts[eventOldValueField], oldDoc); err != nil {
			return nil, nil, nil, fmt.Errorf("old_value: %w", err)
		}
	}
	if parts[eventUpdateMaskField] != nil {
		mask = &firestorepb.DocumentMask{}
		if err := unmarshalMerged(parts[eventUpdateMaskField], mask); err != nil {
			return nil, nil, nil, fmt.Errorf("update_mask: %w", err)
		}
	}
	return newDoc, oldDoc, mask, nil
}

// unmarshalMerged unmarshals each occurrence of a field into m in turn.
func unmarshalMerged(occurrences [][]byte, m proto.Message) error {
	opts := protoDecoding
	opts.Merge = true
	for _, b := range occurrences {
		if err := opts.Unmarshal(b, m); err != nil {
			return err
		}
	}
	return nil
}

// unmarshalEventJSON reads the protojson form of DocumentEventData. protojson
// accepts a field's JSON name and its proto name, so both are looked up.
func unmarshalEventJSON(data []byte) (newDoc, oldDoc *firestorepb.Document, mask *firestorepb.DocumentMask, err error) {
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(data, &outer); err != nil {
		return nil, nil, nil, fmt.Errorf("JSON: %w", err)
	}
	field := func(jsonName, protoName string) (json.RawMessage, error) {
		v, ok := outer[jsonName]
		if w, dup := outer[protoName]; dup && protoName != jsonName {
			if ok {
				return nil, fmt.Errorf("both %q and %q are set", jsonName, protoName)
			}
			v, ok = w, true
		}
		if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return nil, nil
		}
		return v, nil
	}

	raw, err := field("value", "value")
	if err != nil {
		return nil, nil, nil, err
	}
	if raw != nil {
		newDoc = &firestorepb.Document{}
		if err := jsonDecoding.Unmarshal(raw, newDoc); err != nil {
			return nil, nil, nil, fmt.Errorf("value: %w", err)
		}
	}
	if raw, err = field("oldValue", "old_value"); err != nil {
		return nil, nil, nil, err
	}
	if raw != nil {
		oldDoc = &firestorepb.Document{}
		if err := jsonDecoding.Unmarshal(raw, oldDoc); err != nil {
			return nil, nil, nil, fmt.Errorf("oldValue: %w", err)
		}
	}
	if raw, err = field("updateMask", "update_mask"); err != nil {
		return nil, nil, nil, err
	}
	if raw != nil {
		mask = &firestorepb.DocumentMask{}
		if err := jsonDecoding.Unmarshal(raw, mask); err != nil {
			return nil, nil, nil, fmt.Errorf("updateMask: %w", err)
		}
	}
	return newDoc, oldDoc, mask, nil
}

// documentState converts a decoded Document; nil stays nil.
func documentState(doc *firestorepb.Document) (*DocumentState, error) {
	if doc == nil {
		return nil, nil
	}
	id, err := documentID(doc.GetName())
	if err != nil {
		return nil, err
	}
	st := &DocumentState{Name: doc.GetName(), ID: id, Fields: make(map[string]any, len(doc.GetFields()))}
	for k, v := range doc.GetFields() {
		if st.Fields[k], err = firestoreValue(v, 1); err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
	}
	if st.CreateTime, err = eventTime(doc.GetCreateTime()); err != nil {
		return nil, fmt.Errorf("create_time: %w", err)
	}
	if st.UpdateTime, err = eventTime(doc.GetUpdateTime()); err != nil {
		return nil, fmt.Errorf("update_time: %w", err)
	}
	return st, nil
}

// documentID checks that name is a document's resource name and returns its
// last segment. An entity event from a Firestore in Datastore mode database
// has the same outer field numbers; decoded as a Document its entity lands
// in name, which fails here if it was valid UTF-8 at all.
func documentID(name string) (string, error) {
	if name == "" {
		return "", errors.New("document has no name")
	}
	parts := strings.Split(name, "/")
	// projects/P/databases/D/documents/ then collection/id pairs.
	if len(parts) < 7 || len(parts)%2 == 0 || parts[0] != "projects" || parts[2] != "databases" || parts[4] != "documents" {
		return "", fmt.Errorf("document name %.200q is not projects/{project}/databases/{database}/documents/{collection}/{id}", name)
	}
	for _, p := range parts {
		if p == "" {
			return "", fmt.Errorf("document name %.200q has an empty segment", name)
		}
	}
	return parts[len(parts)-1], nil
}

// eventTime converts a document timestamp; an absent one is the zero time.
func eventTime(ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, err
	}
	return ts.AsTime(), nil
}

// firestoreValue converts v the way the Firestore client's
// DocumentSnapshot.Data does (createFromProtoValue in from_value.go), with
// two differences: a reference is its resource name (a string), not a
// *firestore.DocumentRef, which would need a client; and a map is always a
// map, never a firestore.Vector64 or BSON type, which token documents do not
// hold.
func firestoreValue(v *firestorepb.Value, depth int) (any, error) {
	if depth > maxValueDepth {
		return nil, fmt.Errorf("values nested more than %d deep in maps and arrays", maxValueDepth)
	}
	switch x := v.GetValueType().(type) {
	case *firestorepb.Value_NullValue:
		return nil, nil
	case *firestorepb.Value_BooleanValue:
		return x.BooleanValue, nil
	case *firestorepb.Value_IntegerValue:
		return x.IntegerValue, nil
	case *firestorepb.Value_DoubleValue:
		return x.DoubleValue, nil
	case *firestorepb.Value_TimestampValue:
		if err := x.TimestampValue.CheckValid(); err != nil {
			return nil, err
		}
		return x.TimestampValue.AsTime(), nil
	case *firestorepb.Value_StringValue:
		return x.StringValue, nil
	case *firestorepb.Value_BytesValue:
		return x.BytesValue, nil
	case *firestorepb.Value_ReferenceValue:
		return x.ReferenceValue, nil
	case *firestorepb.Value_GeoPointValue:
		// A fresh value: fields unknown to this version of latlng.proto
		// carry no meaning for a point.
		return &latlng.LatLng{Latitude: x.GeoPointValue.GetLatitude(), Longitude: x.GeoPointValue.GetLongitude()}, nil
	case *firestorepb.Value_ArrayValue:
		vals := x.ArrayValue.GetValues()
		out := make([]any, len(vals))
		for i, e := range vals {
			var err error
			if out[i], err = firestoreValue(e, depth+1); err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return out, nil
	case *firestorepb.Value_MapValue:
		fields := x.MapValue.GetFields()
		out := make(map[string]any, len(fields))
		for k, e := range fields {
			var err error
			if out[k], err = firestoreValue(e, depth+1); err != nil {
				return nil, fmt.Errorf("%q: %w", k, err)
			}
		}
		return out, nil
	case nil:
		return nil, errors.New("value has no type")
	default:
		// Pipeline expressions (field references, functions) share the
		// Value message but are never stored in a document.
		return nil, fmt.Errorf("value of type %T cannot be stored in a document", x)
	}
}
