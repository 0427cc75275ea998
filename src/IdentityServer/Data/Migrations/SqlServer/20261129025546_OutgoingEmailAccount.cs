using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace IdentityServer.Data.Migrations.SqlServer
{
    /// <inheritdoc />
    public partial class OutgoingEmailAccount : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "UserId",
                table: "OutgoingEmails",
                type: "nvarchar(450)",
                nullable: true);

            migrationBuilder.CreateIndex(
                name: "IX_OutgoingEmails_UserId",
                table: "OutgoingEmails",
                column: "UserId");

            migrationBuilder.AddForeignKey(
                name: "FK_OutgoingEmails_AspNetUsers_UserId",
                table: "OutgoingEmails",
                column: "UserId",
                principalTable: "AspNetUsers",
                principalColumn: "Id",
                onDelete: ReferentialAction.Cascade);
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
