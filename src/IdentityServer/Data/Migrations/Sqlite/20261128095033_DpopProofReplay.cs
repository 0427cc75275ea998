using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace IdentityServer.Data.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class DpopProofReplay : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "UsedDpopProofs",
                columns: table => new
                {
                    Thumbprint = table.Column<string>(type: "TEXT", maxLength: 43, nullable: false),
                    JtiHash = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    ExpiresAt = table.Column<DateTime>(type: "TEXT", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_UsedDpopProofs", x => new { x.Thumbprint, x.JtiHash });
                });

            migrationBuilder.CreateIndex(
                name: "IX_UsedDpopProofs_ExpiresAt",
                table: "UsedDpopProofs",
                column: "ExpiresAt");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "UsedDpopProofs");
        }
    }
}
