using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace IdentityServer.Data.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class OutgoingEmailAccount : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // SQLite adds a nullable column with its foreign key in place: what AddColumn and AddForeignKey would do by
            // rebuilding the table, outside a transaction (foreign keys off), in one transactional statement.
            migrationBuilder.Sql(
                "ALTER TABLE \"OutgoingEmails\" ADD \"UserId\" TEXT NULL " +
                "CONSTRAINT \"FK_OutgoingEmails_AspNetUsers_UserId\" REFERENCES \"AspNetUsers\" (\"Id\") ON DELETE CASCADE;");

            migrationBuilder.CreateIndex(
                name: "IX_OutgoingEmails_UserId",
                table: "OutgoingEmails",
                column: "UserId");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropForeignKey(
                name: "FK_OutgoingEmails_AspNetUsers_UserId",
                table: "OutgoingEmails");

            migrationBuilder.DropIndex(
                name: "IX_OutgoingEmails_UserId",
                table: "OutgoingEmails");

            migrationBuilder.DropColumn(
                name: "UserId",
                table: "OutgoingEmails");
        }
    }
}
