package mongotest

import (
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Catalog commands: create, drop, dropDatabase, listCollections,
// listDatabases.

func cmdCreate(s *Server, _ *conn, req *request) (bson.D, error) {
	name, err := collArg(req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.coll(req.db, name, true)
	return bson.D{}, nil
}

func cmdDrop(s *Server, _ *conn, req *request) (bson.D, error) {
	name, err := collArg(req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropColl(req.db, name)
	return bson.D{{Key: "nIndexesWas", Value: int32(1)}, {Key: "ns", Value: req.db + "." + name}}, nil
}

// dropColl removes a collection and logs a drop if it existed. Callers
// hold s.mu.
func (s *Server) dropColl(db, name string) {
	if s.coll(db, name, false) == nil {
		return
	}
	delete(s.dbs[db], name)
	if len(s.dbs[db]) == 0 {
		delete(s.dbs, db)
	}
	s.appendEntry(&entry{op: "drop", db: db, coll: name})
}

func cmdDropDatabase(s *Server, _ *conn, req *request) (bson.D, error) {
	if err := checkDBName(req.db); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	colls, ok := s.dbs[req.db]
	if ok {
		names := make([]string, 0, len(colls))
		for n := range colls {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			s.dropColl(req.db, n)
		}
		delete(s.dbs, req.db)
		s.appendEntry(&entry{op: "dropDatabase", db: req.db})
	}
	return bson.D{{Key: "dropped", Value: req.db}}, nil
}

func cmdListCollections(s *Server, _ *conn, req *request) (bson.D, error) {
	filter, err := lookupDoc(req.body, "filter")
	if err != nil {
		return nil, err
	}
	nameOnly := truthy(req.body.Lookup("nameOnly"))
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.dbs[req.db]))
	for n := range s.dbs[req.db] {
		names = append(names, n)
	}
	sort.Strings(names)
	var docs []bson.Raw
	for _, n := range names {
		d := bson.D{{Key: "name", Value: n}, {Key: "type", Value: "collection"}}
		if !nameOnly {
			d = append(d,
				bson.E{Key: "options", Value: bson.D{}},
				bson.E{Key: "info", Value: bson.D{{Key: "readOnly", Value: false}}},
				bson.E{Key: "idIndex", Value: bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: bson.D{{Key: "_id", Value: int32(1)}}}, {Key: "name", Value: "_id_"}}})
		}
		raw, _ := bson.Marshal(d)
		ok, err := matches(raw, filter)
		if err != nil {
			return nil, err
		}
		if ok {
			docs = append(docs, raw)
		}
	}
	return s.docCursor(req.db+".$cmd.listCollections", docs, -1, true), nil
}

func cmdListDatabases(s *Server, _ *conn, req *request) (bson.D, error) {
	filter, err := lookupDoc(req.body, "filter")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.dbs))
	for n := range s.dbs {
		names = append(names, n)
	}
	sort.Strings(names)
	var dbs bson.A
	var total int64
	for _, n := range names {
		var size int64
		for _, c := range s.dbs[n] {
			for _, d := range c.docs {
				size += int64(len(d))
			}
		}
		d := bson.D{{Key: "name", Value: n}, {Key: "sizeOnDisk", Value: size}, {Key: "empty", Value: size == 0}}
		raw, _ := bson.Marshal(d)
		ok, err := matches(raw, filter)
		if err != nil {
			return nil, err
		}
		if ok {
			dbs = append(dbs, raw)
			total += size
		}
	}
	if dbs == nil {
		dbs = bson.A{}
	}
	return bson.D{{Key: "databases", Value: dbs}, {Key: "totalSize", Value: total}, {Key: "totalSizeMb", Value: total >> 20}}, nil
}
