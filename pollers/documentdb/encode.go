package documentdb

import (
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/source"
)

// AppendEvent appends the element AWS puts in a DocumentDB event's
// "events" array for one change event, {"event":<change>}: the change
// event as the server sent it, field for field and in its order, in
// relaxed extended JSON (spec 1.8): _id as {"_data":"<resume token>"},
// clusterTime as {"$timestamp":{"t":..,"i":..}}, ObjectIDs as {"$oid":..},
// dates as {"$date":"<ISO-8601>"}, numbers as JSON numbers.
func AppendEvent(dst []byte, ev bson.Raw) ([]byte, error) {
	js, err := bson.MarshalExtJSON(ev, false, false)
	if err != nil {
		return dst, err
	}
	return payload.AppendDocumentDB(dst, js), nil
}

// ErrMalformedEvent: a change event without a resume token (_id._data).
var ErrMalformedEvent = errors.New("documentdb: change event without a resume token")

// record encodes a change event. Its ID and Seq are the resume token's
// _data, its Arrival the event's clusterTime; inval says it is an
// invalidate event.
func (p *Poller) record(ev bson.Raw) (rec source.Record, inval bool, err error) {
	tok, ok := ev.Lookup("_id", "_data").StringValueOK()
	if !ok {
		return rec, false, fmt.Errorf("%w: %s", ErrMalformedEvent, truncate(ev))
	}
	data, err := AppendEvent(make([]byte, 0, len(ev)*5/4+16), ev)
	if err != nil {
		return rec, false, fmt.Errorf("documentdb: encode change event %s: %w", tok, err)
	}
	rec = source.Record{Lane: p.lane, ID: tok, Seq: tok, Data: data}
	if t, _, ok := ev.Lookup("clusterTime").TimestampOK(); ok {
		rec.Arrival = time.Unix(int64(t), 0)
	}
	op, _ := ev.Lookup("operationType").StringValueOK()
	return rec, op == "invalidate", nil
}

// truncate shows the start of an event in an error message.
func truncate(ev bson.Raw) string {
	s := ev.String()
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
