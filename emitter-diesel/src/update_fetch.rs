//! `save_changes` for backends without `UPDATE ... RETURNING` in Diesel's DSL
//! (SQLite, MySQL): the update runs through the wrapper, which captures its event,
//! then the row is read back by key, as Diesel's own impl for those connections does.
//! One macro, so that the bounds (copied from Diesel's) are written once.

macro_rules! update_then_find {
    ($inner:ty) => {
        impl<'b, Changes, Output> ::diesel::query_dsl::UpdateAndFetchResults<Changes, Output>
            for $crate::connection::EmittingConnection<$inner>
        where
            Changes: Copy + ::diesel::associations::Identifiable,
            Changes: ::diesel::query_builder::AsChangeset<
                    Target = <Changes as ::diesel::associations::HasTable>::Table,
                > + ::diesel::query_builder::IntoUpdateTarget,
            Changes::Table: ::diesel::query_dsl::methods::FindDsl<Changes::Id>,
            ::diesel::dsl::Update<Changes, Changes>: ::diesel::query_dsl::methods::ExecuteDsl<
                $crate::connection::EmittingConnection<$inner>,
            >,
            ::diesel::dsl::Find<Changes::Table, Changes::Id>: ::diesel::query_dsl::LoadQuery<
                'b,
                $crate::connection::EmittingConnection<$inner>,
                Output,
            >,
            <Changes::Table as ::diesel::Table>::AllColumns: ::diesel::expression::ValidGrouping<()>
                + ::diesel::expression::SelectableExpression<
                    ::diesel::query_builder::returning::ReturningQuerySource<
                        ::diesel::query_builder::returning::UpdateStmt,
                        Changes::Table,
                    >,
                >,
            <<Changes::Table as ::diesel::Table>::AllColumns as ::diesel::expression::ValidGrouping<
                (),
            >>::IsAggregate: ::diesel::expression::MixedAggregates<
                ::diesel::expression::is_aggregate::No,
                Output = ::diesel::expression::is_aggregate::No,
            >,
        {
            fn update_and_fetch(
                &mut self,
                changeset: Changes,
            ) -> ::diesel::result::QueryResult<Output> {
                use ::diesel::query_dsl::methods::FindDsl;
                use ::diesel::RunQueryDsl;
                ::diesel::update(changeset).set(changeset).execute(self)?;
                Changes::table().find(changeset.id()).get_result(self)
            }
        }
    };
}
