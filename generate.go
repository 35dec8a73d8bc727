package main

// One ordered chain: ent first (gqlgen binds to its types), then gqlgen.
//go:generate go tool ent generate --feature sql/execquery,sql/upsert,sql/modifier ./ent/schema
//go:generate go run ./internal/gqlgen -config gqlgen.yml
