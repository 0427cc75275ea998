using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace IdentityServer.Data.Migrations.SqlServer
{
    /// <inheritdoc />
    public partial class DurableLogoutTokens : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropForeignKey(
                name: "FK_UserSessionClients_UserSessions_SessionId",
                table: "UserSessionClients");

            migrationBuilder.AddColumn<int>(
                name: "Attempts",
                table: "UserSessionClients",
                type: "int",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<DateTime>(
                name: "NotifyAt",
                table: "UserSessionClients",
                type: "datetime2",
                nullable: true);

            migrationBuilder.AddColumn<DateTime>(
                name: "RecordedAt",
                table: "UserSessionClients",
                type: "datetime2",
                nullable: false,
                defaultValue: new DateTime(1, 1, 1, 0, 0, 0, 0, DateTimeKind.Unspecified));

            migrationBuilder.AddColumn<string>(
                name: "UserId",
                table: "UserSessionClients",
                type: "nvarchar(450)",
                maxLength: 450,
                nullable: false,
                defaultValue: "");

            // Rows recorded before this migration: their user and time come from their session (every one has one:
            // until now, ending a session deleted its clients' rows with it).
            // EXEC: SQL Server compiles a batch before running it, and in a script this statement shares its batch with
            // the ALTER TABLE that adds the columns (an "Invalid column name" then). EXEC compiles it when it runs.
            migrationBuilder.Sql(
                "EXEC(N'UPDATE [UserSessionClients] SET [UserId] = (SELECT s.[UserId] FROM [UserSessions] s WHERE s.[Id] = [UserSessionClients].[SessionId]), " +
                "[RecordedAt] = (SELECT s.[SignedInAt] FROM [UserSessions] s WHERE s.[Id] = [UserSessionClients].[SessionId])')");

            migrationBuilder.CreateIndex(
                name: "IX_UserSessionClients_NotifyAt",
                table: "UserSessionClients",
                column: "NotifyAt");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_UserSessionClients_NotifyAt",
                table: "UserSessionClients");

            migrationBuilder.DropColumn(
                name: "Attempts",
                table: "UserSessionClients");

            migrationBuilder.DropColumn(
                name: "NotifyAt",
                table: "UserSessionClients");

            migrationBuilder.DropColumn(
                name: "RecordedAt",
                table: "UserSessionClients");

            migrationBuilder.DropColumn(
                name: "UserId",
                table: "UserSessionClients");

            // The foreign key comes back: rows of ended sessions (logout tokens not yet sent) must go first.
            migrationBuilder.Sql(
                "DELETE FROM [UserSessionClients] WHERE NOT EXISTS (SELECT 1 FROM [UserSessions] s WHERE s.[Id] = [UserSessionClients].[SessionId])");

            migrationBuilder.AddForeignKey(
                name: "FK_UserSessionClients_UserSessions_SessionId",
                table: "UserSessionClients",
                column: "SessionId",
                principalTable: "UserSessions",
                principalColumn: "Id",
                onDelete: ReferentialAction.Cascade);
        }
    }
}
