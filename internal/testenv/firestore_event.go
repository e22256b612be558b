package testenv

import (
	"fmt"
	"sort"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// FirestoreDoc is a document as a Firestore event carries it.
type FirestoreDoc struct {
	Path                   string // collection/id, e.g. plaid_tokens/item-1
	Fields                 map[string]any
	CreateTime, UpdateTime time.Time
}

// FirestoreEventData encodes a google.events.cloud.firestore.v1
// DocumentEventData as Eventarc sends it (application/protobuf): value
// (field 1, the document after), old_value (2, before) and update_mask
// (3). Its Document, Value and DocumentMask messages carry the field
// numbers of google.firestore.v1's, so firestorepb encodes them byte for
// byte; only the outer message, three length-delimited fields, is written
// here. (lifecycle's decoder tests build the same bytes from data.proto's
// own descriptors.) Field values are Go values: nil, bool, int, int64,
// float64, string, time.Time, []any, map[string]any.
func FirestoreEventData(project string, oldDoc, newDoc *FirestoreDoc, updateMask []string) ([]byte, error) {
	var out []byte
	for _, f := range []struct {
		num protowire.Number
		doc *FirestoreDoc
	}{{1, newDoc}, {2, oldDoc}} {
		if f.doc == nil {
			continue
		}
		pb, err := firestoreDocument(project, f.doc)
		if err != nil {
			return nil, err
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
		if err != nil {
			return nil, err
		}
		out = protowire.AppendTag(out, f.num, protowire.BytesType)
		out = protowire.AppendBytes(out, b)
	}
	if updateMask != nil {
		b, err := proto.Marshal(&firestorepb.DocumentMask{FieldPaths: updateMask})
		if err != nil {
			return nil, err
		}
		out = protowire.AppendTag(out, 3, protowire.BytesType)
		out = protowire.AppendBytes(out, b)
	}
	return out, nil
}

func firestoreDocument(project string, d *FirestoreDoc) (*firestorepb.Document, error) {
	doc := &firestorepb.Document{
		Name:   fmt.Sprintf("projects/%s/databases/(default)/documents/%s", project, d.Path),
		Fields: map[string]*firestorepb.Value{},
	}
	if !d.CreateTime.IsZero() {
		doc.CreateTime = timestamppb.New(d.CreateTime)
	}
	if !d.UpdateTime.IsZero() {
		doc.UpdateTime = timestamppb.New(d.UpdateTime)
	}
	keys := make([]string, 0, len(d.Fields))
	for k := range d.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, err := firestoreValue(d.Fields[k])
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", k, err)
		}
		doc.Fields[k] = v
	}
	return doc, nil
}

func firestoreValue(v any) (*firestorepb.Value, error) {
	switch x := v.(type) {
	case nil:
		return &firestorepb.Value{ValueType: &firestorepb.Value_NullValue{NullValue: structpb.NullValue_NULL_VALUE}}, nil
	case bool:
		return &firestorepb.Value{ValueType: &firestorepb.Value_BooleanValue{BooleanValue: x}}, nil
	case int:
		return &firestorepb.Value{ValueType: &firestorepb.Value_IntegerValue{IntegerValue: int64(x)}}, nil
	case int64:
		return &firestorepb.Value{ValueType: &firestorepb.Value_IntegerValue{IntegerValue: x}}, nil
	case float64:
		return &firestorepb.Value{ValueType: &firestorepb.Value_DoubleValue{DoubleValue: x}}, nil
	case string:
		return &firestorepb.Value{ValueType: &firestorepb.Value_StringValue{StringValue: x}}, nil
	case time.Time:
		return &firestorepb.Value{ValueType: &firestorepb.Value_TimestampValue{TimestampValue: timestamppb.New(x)}}, nil
	case []any:
		arr := &firestorepb.ArrayValue{}
		for _, e := range x {
			ev, err := firestoreValue(e)
			if err != nil {
				return nil, err
			}
			arr.Values = append(arr.Values, ev)
		}
		return &firestorepb.Value{ValueType: &firestorepb.Value_ArrayValue{ArrayValue: arr}}, nil
	case map[string]any:
		m := &firestorepb.MapValue{Fields: map[string]*firestorepb.Value{}}
		for k, e := range x {
			ev, err := firestoreValue(e)
			if err != nil {
				return nil, err
			}
			m.Fields[k] = ev
		}
		return &firestorepb.Value{ValueType: &firestorepb.Value_MapValue{MapValue: m}}, nil
	}
	return nil, fmt.Errorf("no Firestore value for %T", v)
}

// FirestoreEvent is the CloudEvent Eventarc delivers for a write to
// document path (collection/id) of project, with data from
// FirestoreEventData: type google.cloud.firestore.document.v1.written,
// application/protobuf.
func FirestoreEvent(id, project, path string, at time.Time, data []byte) (event.Event, error) {
	e := event.New()
	e.SetID(id)
	e.SetType("google.cloud.firestore.document.v1.written")
	e.SetSource("//firestore.googleapis.com/projects/" + project + "/databases/(default)")
	e.SetSubject("documents/" + path)
	e.SetTime(at)
	e.SetDataSchema("https://github.com/googleapis/google-cloudevents/blob/main/proto/google/events/cloud/firestore/v1/data.proto")
	if err := e.SetData("application/protobuf", data); err != nil {
		return e, err
	}
	return e, nil
}
