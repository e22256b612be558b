package lifecycle_test

import (
	"bytes"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/type/latlng"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// The tests build event data the way Eventarc does, from the message types
// of google-cloudevents' proto/google/events/cloud/firestore/v1/data.proto,
// declared here at run time, not from the decoder's firestorepb types.

// eventarcTypes are data.proto's messages.
type eventarcTypes struct {
	event, mask, doc, value, array, mapValue protoreflect.MessageDescriptor
}

var eventarc = sync.OnceValue(func() *eventarcTypes {
	const pkg = "google.events.cloud.firestore.v1"
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	field := func(name string, num int32, label *descriptorpb.FieldDescriptorProto_Label, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{
			Name:     proto.String(name),
			JsonName: proto.String(lowerCamel(name)),
			Number:   proto.Int32(num),
			Label:    label,
			Type:     typ.Enum(),
		}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING
	// A map<string, Value> field is a repeated nested FieldsEntry.
	fieldsEntry := &descriptorpb.DescriptorProto{
		Name: proto.String("FieldsEntry"),
		Field: []*descriptorpb.FieldDescriptorProto{
			field("key", 1, opt, str, ""),
			field("value", 2, opt, msg, "."+pkg+".Value"),
		},
		Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
	}
	oneof := func(f *descriptorpb.FieldDescriptorProto) *descriptorpb.FieldDescriptorProto {
		f.OneofIndex = proto.Int32(0)
		return f
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("google/events/cloud/firestore/v1/data.proto"),
		Package:    proto.String(pkg),
		Dependency: []string{"google/protobuf/struct.proto", "google/protobuf/timestamp.proto", "google/type/latlng.proto"},
		Syntax:     proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{
				Name: proto.String("DocumentEventData"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("value", 1, opt, msg, "."+pkg+".Document"),
					field("old_value", 2, opt, msg, "."+pkg+".Document"),
					field("update_mask", 3, opt, msg, "."+pkg+".DocumentMask"),
				},
			},
			{
				Name:  proto.String("DocumentMask"),
				Field: []*descriptorpb.FieldDescriptorProto{field("field_paths", 1, rep, str, "")},
			},
			{
				Name: proto.String("Document"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("name", 1, opt, str, ""),
					field("fields", 2, rep, msg, "."+pkg+".Document.FieldsEntry"),
					field("create_time", 3, opt, msg, ".google.protobuf.Timestamp"),
					field("update_time", 4, opt, msg, ".google.protobuf.Timestamp"),
				},
				NestedType: []*descriptorpb.DescriptorProto{fieldsEntry},
			},
			{
				Name: proto.String("Value"),
				Field: []*descriptorpb.FieldDescriptorProto{
					oneof(field("null_value", 11, opt, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".google.protobuf.NullValue")),
					oneof(field("boolean_value", 1, opt, descriptorpb.FieldDescriptorProto_TYPE_BOOL, "")),
					oneof(field("integer_value", 2, opt, descriptorpb.FieldDescriptorProto_TYPE_INT64, "")),
					oneof(field("double_value", 3, opt, descriptorpb.FieldDescriptorProto_TYPE_DOUBLE, "")),
					oneof(field("timestamp_value", 10, opt, msg, ".google.protobuf.Timestamp")),
					oneof(field("string_value", 17, opt, str, "")),
					oneof(field("bytes_value", 18, opt, descriptorpb.FieldDescriptorProto_TYPE_BYTES, "")),
					oneof(field("reference_value", 5, opt, str, "")),
					oneof(field("geo_point_value", 8, opt, msg, ".google.type.LatLng")),
					oneof(field("array_value", 9, opt, msg, "."+pkg+".ArrayValue")),
					oneof(field("map_value", 6, opt, msg, "."+pkg+".MapValue")),
				},
				OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("value_type")}},
			},
			{
				Name:  proto.String("ArrayValue"),
				Field: []*descriptorpb.FieldDescriptorProto{field("values", 1, rep, msg, "."+pkg+".Value")},
			},
			{
				Name: proto.String("MapValue"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("fields", 1, rep, msg, "."+pkg+".MapValue.FieldsEntry"),
				},
				NestedType: []*descriptorpb.DescriptorProto{fieldsEntry},
			},
		},
	}
	// The imports resolve to the generated descriptors, so the dynamic
	// messages hold real timestamppb and latlng messages.
	var deps protoregistry.Files
	for _, f := range []protoreflect.FileDescriptor{
		structpb.File_google_protobuf_struct_proto,
		timestamppb.File_google_protobuf_timestamp_proto,
		latlng.File_google_type_latlng_proto,
	} {
		if err := deps.RegisterFile(f); err != nil {
			panic(err)
		}
	}
	fd, err := protodesc.NewFile(fdp, &deps)
	if err != nil {
		panic(err)
	}
	m := fd.Messages()
	return &eventarcTypes{
		event:    m.ByName("DocumentEventData"),
		mask:     m.ByName("DocumentMask"),
		doc:      m.ByName("Document"),
		value:    m.ByName("Value"),
		array:    m.ByName("ArrayValue"),
		mapValue: m.ByName("MapValue"),
	}
})

// lowerCamel is protoc's default json_name: field_paths becomes fieldPaths.
func lowerCamel(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// Builders for data.proto messages.

func pbValue(field string, v protoreflect.Value) protoreflect.Message {
	m := dynamicpb.NewMessage(eventarc().value)
	m.Set(eventarc().value.Fields().ByName(protoreflect.Name(field)), v)
	return m
}

func pbNull() protoreflect.Message { return pbValue("null_value", protoreflect.ValueOfEnum(0)) }
func pbBool(b bool) protoreflect.Message {
	return pbValue("boolean_value", protoreflect.ValueOfBool(b))
}
func pbInt(i int64) protoreflect.Message {
	return pbValue("integer_value", protoreflect.ValueOfInt64(i))
}
func pbDouble(f float64) protoreflect.Message {
	return pbValue("double_value", protoreflect.ValueOfFloat64(f))
}
func pbString(s string) protoreflect.Message {
	return pbValue("string_value", protoreflect.ValueOfString(s))
}
func pbBytes(b []byte) protoreflect.Message {
	return pbValue("bytes_value", protoreflect.ValueOfBytes(b))
}
func pbRef(name string) protoreflect.Message {
	return pbValue("reference_value", protoreflect.ValueOfString(name))
}
func pbTime(t time.Time) protoreflect.Message {
	return pbValue("timestamp_value", protoreflect.ValueOfMessage(timestamppb.New(t).ProtoReflect()))
}
func pbGeo(lat, lng float64) protoreflect.Message {
	return pbValue("geo_point_value", protoreflect.ValueOfMessage((&latlng.LatLng{Latitude: lat, Longitude: lng}).ProtoReflect()))
}

func pbArray(vals ...protoreflect.Message) protoreflect.Message {
	a := dynamicpb.NewMessage(eventarc().array)
	list := a.Mutable(eventarc().array.Fields().ByName("values")).List()
	for _, v := range vals {
		list.Append(protoreflect.ValueOfMessage(v))
	}
	return pbValue("array_value", protoreflect.ValueOfMessage(a))
}

func pbMap(fields map[string]protoreflect.Message) protoreflect.Message {
	m := dynamicpb.NewMessage(eventarc().mapValue)
	setFields(m, fields)
	return pbValue("map_value", protoreflect.ValueOfMessage(m))
}

func setFields(m protoreflect.Message, fields map[string]protoreflect.Message) {
	mp := m.Mutable(m.Descriptor().Fields().ByName("fields")).Map()
	for k, v := range fields {
		mp.Set(protoreflect.ValueOfString(k).MapKey(), protoreflect.ValueOfMessage(v))
	}
}

func pbDoc(name string, fields map[string]protoreflect.Message, created, updated time.Time) protoreflect.Message {
	d := dynamicpb.NewMessage(eventarc().doc)
	fd := eventarc().doc.Fields()
	d.Set(fd.ByName("name"), protoreflect.ValueOfString(name))
	setFields(d, fields)
	d.Set(fd.ByName("create_time"), protoreflect.ValueOfMessage(timestamppb.New(created).ProtoReflect()))
	d.Set(fd.ByName("update_time"), protoreflect.ValueOfMessage(timestamppb.New(updated).ProtoReflect()))
	return d
}

// pbEvent is a DocumentEventData; a nil document or mask stays unset.
func pbEvent(newDoc, oldDoc protoreflect.Message, mask []string) *dynamicpb.Message {
	e := dynamicpb.NewMessage(eventarc().event)
	fd := eventarc().event.Fields()
	if newDoc != nil {
		e.Set(fd.ByName("value"), protoreflect.ValueOfMessage(newDoc))
	}
	if oldDoc != nil {
		e.Set(fd.ByName("old_value"), protoreflect.ValueOfMessage(oldDoc))
	}
	if mask != nil {
		m := dynamicpb.NewMessage(eventarc().mask)
		list := m.Mutable(eventarc().mask.Fields().ByName("field_paths")).List()
		for _, p := range mask {
			list.Append(protoreflect.ValueOfString(p))
		}
		e.Set(fd.ByName("update_mask"), protoreflect.ValueOfMessage(m))
	}
	return e
}

func marshalProto(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("proto.Marshal: %v", err)
	}
	return b
}

func marshalJSON(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatalf("protojson.Marshal: %v", err)
	}
	return b
}

const docPrefix = "projects/demo-finwell/databases/(default)/documents/"

var (
	created = time.Date(2025, 3, 1, 9, 30, 0, 123456000, time.UTC)
	updated = time.Date(2025, 6, 14, 17, 5, 42, 987654000, time.UTC)
	later   = time.Date(2025, 6, 15, 2, 0, 7, 1000, time.UTC)
)

// tokenFields is a plaid_tokens document as the service writes it.
func tokenFields(status string, usedAt time.Time) (map[string]protoreflect.Message, map[string]any) {
	return map[string]protoreflect.Message{
			"item_id":          pbString("item-1"),
			"user_id":          pbString("user-7"),
			"access_token":     pbString("gAAAAABk-ciphertext"),
			"institution_id":   pbString("ins_109508"),
			"institution_name": pbString("First Platypus Bank"),
			"status":           pbString(status),
			"environment":      pbString("sandbox"),
			"created_at":       pbTime(created),
			"last_used_at":     pbTime(usedAt),
			"error_code":       pbNull(),
		}, map[string]any{
			"item_id":          "item-1",
			"user_id":          "user-7",
			"access_token":     "gAAAAABk-ciphertext",
			"institution_id":   "ins_109508",
			"institution_name": "First Platypus Bank",
			"status":           status,
			"environment":      "sandbox",
			"created_at":       created,
			"last_used_at":     usedAt,
			"error_code":       nil,
		}
}

// everyValue has one field of each Firestore value type, and nesting.
func everyValue() (map[string]protoreflect.Message, map[string]any) {
	pre1970 := time.Date(1969, 7, 20, 20, 17, 40, 5000, time.UTC)
	return map[string]protoreflect.Message{
			"null":        pbNull(),
			"true":        pbBool(true),
			"false":       pbBool(false),
			"int":         pbInt(-42),
			"int_max":     pbInt(math.MaxInt64),
			"int_zero":    pbInt(0),
			"double":      pbDouble(2.5),
			"double_zero": pbDouble(0),
			"double_inf":  pbDouble(math.Inf(-1)),
			"time":        pbTime(updated),
			"time_1969":   pbTime(pre1970),
			"string":      pbString("Ünïcödé ✓"),
			"empty":       pbString(""),
			"bytes":       pbBytes([]byte{0, 1, 0xfe, 0xff}),
			"no_bytes":    pbBytes([]byte{}),
			"ref":         pbRef(docPrefix + "users/user-7"),
			"geo":         pbGeo(-33.8688, 151.2093),
			"array":       pbArray(pbInt(1), pbString("two"), pbNull(), pbDouble(3.5)),
			"no_array":    pbArray(),
			"no_map":      pbMap(nil),
			"nested": pbMap(map[string]protoreflect.Message{
				"list": pbArray(
					pbMap(map[string]protoreflect.Message{
						"deep": pbMap(map[string]protoreflect.Message{
							"at":   pbTime(later),
							"tags": pbArray(pbString("a"), pbBool(false)),
						}),
					}),
					pbArray(), // an array can't hold an array in Firestore; the format can
					pbGeo(0, 0),
				),
				"x.y`z": pbBytes([]byte("k")),
			}),
		}, map[string]any{
			"null":        nil,
			"true":        true,
			"false":       false,
			"int":         int64(-42),
			"int_max":     int64(math.MaxInt64),
			"int_zero":    int64(0),
			"double":      2.5,
			"double_zero": 0.0,
			"double_inf":  math.Inf(-1),
			"time":        updated,
			"time_1969":   pre1970,
			"string":      "Ünïcödé ✓",
			"empty":       "",
			"bytes":       []byte{0, 1, 0xfe, 0xff},
			"no_bytes":    []byte{},
			"ref":         docPrefix + "users/user-7",
			"geo":         &latlng.LatLng{Latitude: -33.8688, Longitude: 151.2093},
			"array":       []any{int64(1), "two", nil, 3.5},
			"no_array":    []any{},
			"no_map":      map[string]any{},
			"nested": map[string]any{
				"list": []any{
					map[string]any{
						"deep": map[string]any{
							"at":   later,
							"tags": []any{"a", false},
						},
					},
					[]any{},
					&latlng.LatLng{},
				},
				"x.y`z": []byte("k"),
			},
		}
}

type eventCase struct {
	name  string
	event *dynamicpb.Message
	want  *lifecycle.DocumentEvent
}

func eventCases() []eventCase {
	activeIn, activeOut := tokenFields("active", updated)
	revokedIn, revokedOut := tokenFields("revoked", later)
	valuesIn, valuesOut := everyValue()
	const token = docPrefix + "plaid_tokens/item-1"
	return []eventCase{
		{
			name:  "create",
			event: pbEvent(pbDoc(token, activeIn, created, created), nil, nil),
			want: &lifecycle.DocumentEvent{
				New: &lifecycle.DocumentState{Name: token, ID: "item-1", Fields: activeOut, CreateTime: created, UpdateTime: created},
			},
		},
		{
			name:  "delete",
			event: pbEvent(nil, pbDoc(token, revokedIn, created, later), nil),
			want: &lifecycle.DocumentEvent{
				Old: &lifecycle.DocumentState{Name: token, ID: "item-1", Fields: revokedOut, CreateTime: created, UpdateTime: later},
			},
		},
		{
			name:  "update with mask",
			event: pbEvent(pbDoc(token, revokedIn, created, later), pbDoc(token, activeIn, created, updated), []string{"status", "last_used_at"}),
			want: &lifecycle.DocumentEvent{
				New:        &lifecycle.DocumentState{Name: token, ID: "item-1", Fields: revokedOut, CreateTime: created, UpdateTime: later},
				Old:        &lifecycle.DocumentState{Name: token, ID: "item-1", Fields: activeOut, CreateTime: created, UpdateTime: updated},
				UpdateMask: []string{"status", "last_used_at"},
			},
		},
		{
			name:  "every value type, nested",
			event: pbEvent(pbDoc(docPrefix+"plaid_tokens/all/history/h-1", valuesIn, created, updated), nil, nil),
			want: &lifecycle.DocumentEvent{
				New: &lifecycle.DocumentState{Name: docPrefix + "plaid_tokens/all/history/h-1", ID: "h-1", Fields: valuesOut, CreateTime: created, UpdateTime: updated},
			},
		},
		{
			name:  "empty document",
			event: pbEvent(pbDoc(docPrefix+"plaid_tokens/bare", nil, created, created), nil, nil),
			want: &lifecycle.DocumentEvent{
				New: &lifecycle.DocumentState{Name: docPrefix + "plaid_tokens/bare", ID: "bare", Fields: map[string]any{}, CreateTime: created, UpdateTime: created},
			},
		},
	}
}

func TestDecodeDocumentEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range eventCases() {
		for _, form := range []struct{ name, contentType string }{
			{"protobuf", "application/protobuf"},
			{"default", ""},
			{"json", "application/json; charset=utf-8"},
		} {
			t.Run(tc.name+"/"+form.name, func(t *testing.T) {
				t.Parallel()
				data := marshalProto(t, tc.event)
				if form.name == "json" {
					data = marshalJSON(t, tc.event)
				}
				got, err := lifecycle.DecodeDocumentEvent(data, form.contentType)
				if err != nil {
					t.Fatalf("DecodeDocumentEvent: %v", err)
				}
				if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
					t.Errorf("DecodeDocumentEvent (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestDecodeDocumentEventSkipsUnknownFields(t *testing.T) {
	t.Parallel()
	tc := eventCases()[2] // update
	unknown := protowire.AppendTag(nil, 15, protowire.BytesType)
	unknown = protowire.AppendString(unknown, "from a newer data.proto")
	unknown = protowire.AppendTag(unknown, 16, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 1<<40)
	unknown = protowire.AppendTag(unknown, 17, protowire.StartGroupType)
	unknown = protowire.AppendTag(unknown, 1, protowire.Fixed32Type)
	unknown = protowire.AppendFixed32(unknown, 7)
	unknown = protowire.AppendTag(unknown, 17, protowire.EndGroupType)
	ev := proto.Clone(tc.event).(*dynamicpb.Message)
	ev.SetUnknown(unknown)
	doc := ev.Get(eventarc().event.Fields().ByName("value")).Message()
	doc.SetUnknown(unknown)

	got, err := lifecycle.DecodeDocumentEvent(marshalProto(t, ev), "application/protobuf")
	if err != nil {
		t.Fatalf("DecodeDocumentEvent: %v", err)
	}
	if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
		t.Errorf("DecodeDocumentEvent (-want +got):\n%s", diff)
	}

	// protojson of the same event, with keys a newer format might add.
	js := marshalJSON(t, tc.event)
	js = append([]byte(`{"eventFromTheFuture":{"a":[1,2]},`), js[1:]...)
	js = bytes.Replace(js, []byte(`"name":`), []byte(`"newDocField":true,"name":`), 1)
	got, err = lifecycle.DecodeDocumentEvent(js, "application/json")
	if err != nil {
		t.Fatalf("DecodeDocumentEvent(%s): %v", js, err)
	}
	if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
		t.Errorf("DecodeDocumentEvent JSON (-want +got):\n%s", diff)
	}
}

// Firestore nests maps 20 deep at most; the decoder takes 64, the innermost
// value included.
func TestDecodeDocumentEventDeepestNesting(t *testing.T) {
	t.Parallel()
	in, want := pbTime(later), any(later)
	for range 63 {
		in = pbMap(map[string]protoreflect.Message{"m": in})
		want = map[string]any{"m": want}
	}
	name := docPrefix + "plaid_tokens/deep"
	data := marshalProto(t, pbEvent(pbDoc(name, map[string]protoreflect.Message{"n": in}, created, created), nil, nil))
	got, err := lifecycle.DecodeDocumentEvent(data, "")
	if err != nil {
		t.Fatalf("DecodeDocumentEvent: %v", err)
	}
	if diff := cmp.Diff(map[string]any{"n": want}, got.New.Fields); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
}

// A singular message field sent twice is merged, as protobuf parsers do.
func TestDecodeDocumentEventMergesRepeatedDocument(t *testing.T) {
	t.Parallel()
	first := pbDoc(docPrefix+"plaid_tokens/item-1", map[string]protoreflect.Message{"status": pbString("active"), "user_id": pbString("u")}, created, created)
	second := dynamicpb.NewMessage(eventarc().doc)
	setFields(second, map[string]protoreflect.Message{"status": pbString("expired")})
	var data []byte
	for _, d := range []protoreflect.Message{first, second} {
		data = protowire.AppendTag(data, 1, protowire.BytesType)
		data = protowire.AppendBytes(data, marshalProto(t, d.Interface()))
	}

	// What a descriptor-driven parser makes of the same bytes.
	ref := dynamicpb.NewMessage(eventarc().event)
	if err := proto.Unmarshal(data, ref); err != nil {
		t.Fatalf("reference unmarshal: %v", err)
	}
	want := referenceEvent(t, ref)
	if got := want.New.Fields["status"]; got != "expired" {
		t.Fatalf("reference parser kept status %v, want the later value", got)
	}

	got, err := lifecycle.DecodeDocumentEvent(data, "")
	if err != nil {
		t.Fatalf("DecodeDocumentEvent: %v", err)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("DecodeDocumentEvent (-want +got):\n%s", diff)
	}
}

func TestDecodeDocumentEventMalformed(t *testing.T) {
	t.Parallel()
	valid := marshalProto(t, eventCases()[2].event)
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	withDoc := func(d protoreflect.Message) []byte { return marshalProto(t, pbEvent(d, nil, nil)) }
	nestedMaps, nestedArrays := pbString("leaf"), pbString("leaf")
	for range 70 {
		nestedMaps = pbMap(map[string]protoreflect.Message{"m": nestedMaps})
		nestedArrays = pbArray(nestedArrays)
	}
	badTime := dynamicpb.NewMessage(eventarc().doc)
	badTime.Set(eventarc().doc.Fields().ByName("name"), protoreflect.ValueOfString(docPrefix+"plaid_tokens/x"))
	badTime.Set(eventarc().doc.Fields().ByName("update_time"), protoreflect.ValueOfMessage((&timestamppb.Timestamp{Seconds: 1 << 40}).ProtoReflect()))

	protoCases := []struct {
		name string
		data []byte
	}{
		{"empty: neither document", nil},
		{"only a mask", marshalProto(t, pbEvent(nil, nil, []string{"status"}))},
		{"truncated by one byte", valid[:len(valid)-1]},
		{"truncated inside a tag", []byte{0x80}},
		{"truncated length", tag(1, protowire.BytesType)},
		{"length past the end", append(tag(1, protowire.BytesType), 5, 0x0a)},
		{"value as a varint", append(tag(1, protowire.VarintType), 1)},
		{"old_value as fixed64", append(tag(2, protowire.Fixed64Type), 1, 2, 3, 4, 5, 6, 7, 8)},
		{"update_mask as fixed32", append(tag(3, protowire.Fixed32Type), 1, 2, 3, 4)},
		{"field number zero", []byte{0x02, 0x00}},
		{"field number too large", protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3|uint64(protowire.BytesType))},
		{"end group at top level", tag(1, protowire.EndGroupType)},
		{"unterminated group", append(tag(9, protowire.StartGroupType), tag(1, protowire.VarintType)...)},
		{"reserved wire type", []byte{1<<3 | 6}},
		{"garbage", bytes.Repeat([]byte{0xff}, 40)},
		{"text", []byte("value: {name: 'x'}")},
		{"document without name", append(tag(1, protowire.BytesType), 0)},
		{"document cut across two occurrences", splitDocument(t)},
		{"collection name", withDoc(pbDoc(docPrefix+"plaid_tokens", nil, created, created))},
		{"name outside documents", withDoc(pbDoc("projects/p/databases/d/plaid_tokens/x", nil, created, created))},
		{"empty id", withDoc(pbDoc(docPrefix+"plaid_tokens//sub/x", nil, created, created))},
		{"name not UTF-8", protowire.AppendBytes(tag(1, protowire.BytesType), protowire.AppendString(tag(1, protowire.BytesType), docPrefix+"plaid_tokens/\xff"))},
		{"map key not UTF-8", mapKeyNotUTF8()},
		{"value without a type", withDoc(pbDoc(docPrefix+"plaid_tokens/x", map[string]protoreflect.Message{"v": dynamicpb.NewMessage(eventarc().value)}, created, created))},
		{"timestamp value out of range", withDoc(pbDoc(docPrefix+"plaid_tokens/x", map[string]protoreflect.Message{"t": pbValue("timestamp_value", protoreflect.ValueOfMessage((&timestamppb.Timestamp{Seconds: -1 << 40}).ProtoReflect()))}, created, created))},
		{"update time out of range", withDoc(badTime)},
		{"maps nested too deep", withDoc(pbDoc(docPrefix+"plaid_tokens/x", map[string]protoreflect.Message{"n": nestedMaps}, created, created))},
		{"arrays nested too deep", withDoc(pbDoc(docPrefix+"plaid_tokens/x", map[string]protoreflect.Message{"n": nestedArrays}, created, created))},
		{"Datastore-mode entity event", datastoreEntityEvent()},
		{"too large", append(valid, make([]byte, lifecycle.MaxDocumentEventBytes)...)},
	}
	for _, tc := range protoCases {
		t.Run("protobuf/"+tc.name, func(t *testing.T) {
			t.Parallel()
			wantInvalid(t, tc.data, "application/protobuf")
		})
	}

	validJSON := string(marshalJSON(t, eventCases()[2].event))
	jsonCases := []struct{ name, data string }{
		{"not JSON", "value: {name: 'x'}"},
		{"truncated", validJSON[:len(validJSON)-2]},
		{"array", "[]"},
		{"null", "null"},
		{"empty object", "{}"},
		{"value not an object", `{"value": 5}`},
		{"name not a string", `{"value": {"name": 5}}`},
		{"both spellings", `{"oldValue": {"name": "` + docPrefix + `t/a"}, "old_value": {"name": "` + docPrefix + `t/a"}}`},
		{"value without a type", `{"value": {"name": "` + docPrefix + `t/a", "fields": {"v": {}}}}`},
		{"two types in a value", `{"value": {"name": "` + docPrefix + `t/a", "fields": {"v": {"stringValue": "a", "integerValue": "1"}}}}`},
		{"bad timestamp", `{"value": {"name": "` + docPrefix + `t/a", "updateTime": "yesterday"}}`},
		{"mask not a list", `{"value": {"name": "` + docPrefix + `t/a"}, "updateMask": {"fieldPaths": "status"}}`},
		{"collection name", `{"oldValue": {"name": "` + docPrefix + `t"}}`},
	}
	for _, tc := range jsonCases {
		t.Run("json/"+tc.name, func(t *testing.T) {
			t.Parallel()
			wantInvalid(t, []byte(tc.data), "application/json")
		})
	}

	for _, ct := range []string{"text/plain", "application/cloudevents+json", "application/protobuf; charset", ";"} {
		t.Run("content type "+ct, func(t *testing.T) {
			t.Parallel()
			wantInvalid(t, valid, ct)
		})
	}
}

func wantInvalid(t *testing.T, data []byte, contentType string) {
	t.Helper()
	got, err := lifecycle.DecodeDocumentEvent(data, contentType)
	if err == nil {
		t.Fatalf("DecodeDocumentEvent = %+v, want an error", got)
	}
	if !lifecycle.IsCode(err, lifecycle.CodeInvalid) {
		t.Errorf("DecodeDocumentEvent error %v has code %s, want %s", err, lifecycle.ErrorCode(err), lifecycle.CodeInvalid)
	}
	if len(err.Error()) > 2000 {
		t.Errorf("error is %d bytes long: %.200s...", len(err.Error()), err)
	}
}

// splitDocument sends value twice, the document's bytes cut in the middle
// of its name: each occurrence must parse alone before they are merged.
func splitDocument(t *testing.T) []byte {
	doc := marshalProto(t, pbDoc(docPrefix+"plaid_tokens/item-1", nil, created, created).Interface())
	cut := 10 // inside the name
	var data []byte
	for _, part := range [][]byte{doc[:cut], doc[cut:]} {
		data = protowire.AppendBytes(protowire.AppendTag(data, 1, protowire.BytesType), part)
	}
	return data
}

// mapKeyNotUTF8 is an event whose document has a field named "\xc3",
// which proto.Marshal refuses to write.
func mapKeyNotUTF8() []byte {
	bytesField := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	value := protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 1) // integer_value
	entry := bytesField(bytesField(nil, 1, []byte("\xc3")), 2, value)
	doc := bytesField(bytesField(nil, 1, []byte(docPrefix+"plaid_tokens/x")), 2, entry)
	return bytesField(nil, 1, doc)
}

// datastoreEntityEvent is what a trigger on a Firestore in Datastore mode
// database sends (google.events.cloud.datastore.v1.EntityEventData): the
// same outer field numbers, an EntityResult inside.
func datastoreEntityEvent() []byte {
	bytesField := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	partition := bytesField(nil, 2, []byte("demo-finwell")) // project_id
	path := bytesField(nil, 1, []byte("plaid_tokens"))      // kind
	path = bytesField(path, 3, []byte("item-1"))            // name
	key := bytesField(bytesField(nil, 1, partition), 2, path)
	value := bytesField(nil, 17, []byte("active")) // string_value
	value = protowire.AppendVarint(protowire.AppendTag(value, 19, protowire.VarintType), 1)
	entry := bytesField(bytesField(nil, 1, []byte("status")), 2, value)
	entity := bytesField(bytesField(nil, 1, key), 3, entry)
	ts := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(created.Unix()))
	result := bytesField(bytesField(bytesField(nil, 1, entity), 5, ts), 6, ts)
	return bytesField(nil, 1, result)
}

// referenceEvent converts a data.proto DocumentEventData parsed by
// dynamicpb into what DecodeDocumentEvent should return for it. It is the
// fuzz target's oracle, so it shares nothing with the decoder.
func referenceEvent(t testing.TB, ev protoreflect.Message) *lifecycle.DocumentEvent {
	t.Helper()
	fd := eventarc().event.Fields()
	out := &lifecycle.DocumentEvent{}
	state := func(name protoreflect.Name) *lifecycle.DocumentState {
		if !ev.Has(fd.ByName(name)) {
			return nil
		}
		d := ev.Get(fd.ByName(name)).Message()
		dfd := d.Descriptor().Fields()
		docName := d.Get(dfd.ByName("name")).String()
		st := &lifecycle.DocumentState{
			Name:       docName,
			ID:         docName[strings.LastIndex(docName, "/")+1:],
			Fields:     referenceFields(d),
			CreateTime: referenceTime(d, "create_time"),
			UpdateTime: referenceTime(d, "update_time"),
		}
		return st
	}
	out.New = state("value")
	out.Old = state("old_value")
	if ev.Has(fd.ByName("update_mask")) {
		out.UpdateMask = []string{}
		list := ev.Get(fd.ByName("update_mask")).Message().Get(eventarc().mask.Fields().ByName("field_paths")).List()
		for i := range list.Len() {
			out.UpdateMask = append(out.UpdateMask, list.Get(i).String())
		}
	}
	return out
}

func referenceTime(m protoreflect.Message, field protoreflect.Name) time.Time {
	fd := m.Descriptor().Fields().ByName(field)
	if !m.Has(fd) {
		return time.Time{}
	}
	ts := m.Get(fd).Message()
	tfd := ts.Descriptor().Fields()
	return time.Unix(ts.Get(tfd.ByName("seconds")).Int(), ts.Get(tfd.ByName("nanos")).Int()).UTC()
}

func referenceFields(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	m.Get(m.Descriptor().Fields().ByName("fields")).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		out[k.String()] = referenceValue(v.Message())
		return true
	})
	return out
}

func referenceValue(v protoreflect.Message) any {
	fd := v.WhichOneof(v.Descriptor().Oneofs().ByName("value_type"))
	if fd == nil {
		return "<no type>"
	}
	x := v.Get(fd)
	switch fd.Name() {
	case "null_value":
		return nil
	case "boolean_value":
		return x.Bool()
	case "integer_value":
		return x.Int()
	case "double_value":
		return x.Float()
	case "timestamp_value":
		return referenceTime(v, "timestamp_value")
	case "string_value", "reference_value":
		return x.String()
	case "bytes_value":
		return x.Bytes()
	case "geo_point_value":
		g := x.Message()
		gfd := g.Descriptor().Fields()
		return &latlng.LatLng{Latitude: g.Get(gfd.ByName("latitude")).Float(), Longitude: g.Get(gfd.ByName("longitude")).Float()}
	case "array_value":
		list := x.Message().Get(eventarc().array.Fields().ByName("values")).List()
		out := make([]any, list.Len())
		for i := range out {
			out[i] = referenceValue(list.Get(i).Message())
		}
		return out
	case "map_value":
		return referenceFields(x.Message())
	}
	return "<unknown " + string(fd.Name()) + ">"
}

// FuzzDecodeDocumentEvent checks that no input panics, and that whatever
// protobuf input the decoder accepts, a descriptor-driven parser of
// data.proto reads the same way.
func FuzzDecodeDocumentEvent(f *testing.F) {
	for _, tc := range eventCases() {
		f.Add(marshalProto(f, tc.event), false)
		f.Add(marshalJSON(f, tc.event), true)
	}
	valid := marshalProto(f, eventCases()[2].event)
	f.Add(valid[:len(valid)/2], false)
	f.Add(valid[1:], false)
	f.Add([]byte{0x0a, 0x05, 0x0a}, false)
	f.Add([]byte{0x08, 0x01}, false)
	f.Add([]byte{0x0b, 0x08, 0x01, 0x0c}, false) // a group
	f.Add(bytes.Repeat([]byte{0xff}, 12), false)
	f.Add(datastoreEntityEvent(), false)
	f.Add([]byte(`{"value": {"name": "`+docPrefix+`t/a", "fields": {"v": {"mapValue": {"fields": {"w": {"arrayValue": {"values": [{"nullValue": null}]}}}}}}}}`), true)
	f.Add([]byte(`{"value": 5}`), true)
	f.Add([]byte(`{"oldValue": null, "updateMask": {}}`), true)

	f.Fuzz(func(t *testing.T, data []byte, asJSON bool) {
		contentType := "application/protobuf"
		if asJSON {
			contentType = "application/json"
		}
		got, err := lifecycle.DecodeDocumentEvent(data, contentType)
		if err != nil {
			if !lifecycle.IsCode(err, lifecycle.CodeInvalid) {
				t.Fatalf("error %v has code %s, want %s", err, lifecycle.ErrorCode(err), lifecycle.CodeInvalid)
			}
			return
		}
		if got.Old == nil && got.New == nil {
			t.Fatal("decoded an event with neither document")
		}
		for _, st := range []*lifecycle.DocumentState{got.Old, got.New} {
			if st == nil {
				continue
			}
			if !strings.HasPrefix(st.Name, "projects/") || !strings.HasSuffix(st.Name, "/"+st.ID) || st.ID == "" || st.Fields == nil {
				t.Fatalf("decoded document state %+v", st)
			}
		}
		if asJSON {
			return
		}
		ref := dynamicpb.NewMessage(eventarc().event)
		if err := proto.Unmarshal(data, ref); err != nil {
			t.Fatalf("decoder accepted what data.proto rejects (%v)", err)
		}
		if diff := cmp.Diff(referenceEvent(t, ref), got, protocmp.Transform(), cmpNaN); diff != "" {
			t.Fatalf("decoder and data.proto disagree (-data.proto +decoder):\n%s", diff)
		}
	})
}

// cmpNaN treats NaN doubles as equal: the fuzzer finds them.
var cmpNaN = cmp.FilterValues(func(a, b float64) bool { return math.IsNaN(a) && math.IsNaN(b) }, cmp.Comparer(func(a, b float64) bool { return true }))
