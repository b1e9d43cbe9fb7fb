//! [`EmittingCursor`]: the rows of a load, straight from the inner connection or
//! from the buffer a capture filled.

/// The cursor of `EmittingConnection::load`.
///
/// Plumbing: it appears in the `LoadConnection` implementation; application code
/// iterates query results through Diesel and never names it.
pub enum EmittingCursor<Cur, R> {
    /// A statement that was not captured: the inner cursor itself.
    Direct(Cur),
    /// A captured write: its rows, read ahead.
    Buffered(std::vec::IntoIter<R>),
}

impl<Cur, R> Iterator for EmittingCursor<Cur, R>
where
    Cur: Iterator<Item = diesel::QueryResult<R>>,
{
    type Item = diesel::QueryResult<R>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            EmittingCursor::Direct(cursor) => cursor.next(),
            EmittingCursor::Buffered(rows) => rows.next().map(Ok),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            EmittingCursor::Direct(cursor) => cursor.size_hint(),
            EmittingCursor::Buffered(rows) => rows.size_hint(),
        }
    }
}
